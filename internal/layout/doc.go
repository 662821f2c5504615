// Package layout holds the rules of alpinist's source tree as tests, so
// that a change that breaks one fails make test:
//
//   - the layers import one way only: utilities (internal, arch), then
//     apk, then the spec, the boot-disk plan and the system
//     configuration (spec, bootdisk, sysconfig), then
//     the build VM (agent, initramfs, qemu), then the assembler, then
//     the build (builder, repro), then the commands; the test kit
//     (internal/testkit) is for tests and the test commands only;
//   - no function is over 120 lines and no file over 600, except the
//     solver's port of apk's solver (apk/solver);
//   - every package says what it is for in a package comment.
//
// docs/architecture.md draws the same layers.
package layout
