// Package testkit is the home of alpinist's test kit: packages that only
// tests (and the commands that make test data and benchmarks) import.
//
//   - testrepo generates the signed synthetic test repository;
//   - minirootfs gives the real Alpine fixtures and runs the real apk;
//   - vmtest boots VMs and captures their console;
//   - disktest reads partition tables and copies partitions out;
//   - hosttool finds the host tools outputs are checked with (failing
//     under CI, where make test installs them);
//   - rootfstest makes a small canonical rootfs tar for writers' tests;
//   - benchcmp times a writer against its reference tool side by side.
//
// The product's own small utilities are beside it in internal/.
package testkit
