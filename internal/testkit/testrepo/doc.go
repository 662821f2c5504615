// Package testrepo generates alpinist's synthetic test repository: a
// signed Alpine repository in the real APK v2 format, made from real
// binaries in Debian packages (busybox, a kernel and its modules, the
// boot loaders), for each architecture the test suite boots, and the
// odd packages real Alpine cannot show (faults, conflicts, triggers,
// other arches' kernels). cmd/testrepo and make testrepo run Generate;
// tests find the result with Generated. docs/testrepo.md describes it.
package testrepo
