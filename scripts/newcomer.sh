#!/bin/sh
# The newcomer's path, from git clone on: a fresh clone of this
# repository's HEAD in a temporary directory, with no alpinist state (a
# new, empty cache: no test repository, no KVM answer, no build cache,
# no agents), and the machine's /dev/kvm as it is; then the README's two
# commands, make demo and make test, as a new user runs them. Go's own
# module and build caches are kept (they are Go's, not ours).
#
# Usage: scripts/newcomer.sh        (CI runs it: .ci/run)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/local/go/bin"
work=$(mktemp -d "${TMPDIR:-/tmp}/alpinist-newcomer-XXXXXX")
trap 'rm -rf "$work"' EXIT
# Readable by all, as a clone in a home or CI directory is: TestRepro
# runs the second build as nobody.
chmod 755 "$work"
export GOCACHE="$(go env GOCACHE)" GOMODCACHE="$(go env GOMODCACHE)"
export XDG_CACHE_HOME="$work/cache"
unset ALPINIST_CACHE
git clone -q "$src" "$work/alpinist"
# The shared fixtures (Alpine's real packages and minirootfs) sit beside
# every checkout, as ../shared: beside the clone too. The tests that need
# them fail without them under CI.
if [ -d "$src/../shared" ]; then
	ln -s "$(cd "$src/../shared" && pwd)" "$work/shared"
else
	echo "newcomer: no ../shared beside $src: the real-Alpine tests will say so"
fi
cd "$work/alpinist"
echo "newcomer: a fresh clone of $(git rev-parse --short HEAD) in $work/alpinist, cache $XDG_CACHE_HOME"
ls -l /dev/kvm 2>/dev/null || echo "newcomer: no /dev/kvm on this machine"
t0=$(date +%s)
make demo
t1=$(date +%s)
make test
t2=$(date +%s)
echo "newcomer: make demo $((t1 - t0)) s, make test $((t2 - t1)) s"
