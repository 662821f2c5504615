#!/bin/sh
# Run every Go fuzz target in the module, each for the given budget:
# a duration (30s) or a count of executions (5000x; default 30s).
#
# A duration-bound run can end in "context deadline exceeded" with no
# failing input: a race in Go's fuzz coordinator at the -fuzztime deadline
# (go.dev/issue/75804, fixed in Go 1.27). Such a run is reported and not
# counted as a failure; a run that writes a failing input always is.
# make test uses a count, which has no deadline to race.
set -eu
t=${1:-30s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "fuzz: $pkg $f ($t)"
		if go test -run "^$" -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 2s -parallel 2 "$pkg" >"$log" 2>&1; then
			tail -n 2 "$log"
			continue
		fi
		cat "$log"
		if ! grep -q "Failing input written to" "$log" && grep -q "context deadline exceeded" "$log"; then
			echo "fuzz: $f: Go's fuzz coordinator hit its deadline race (go.dev/issue/75804); no failing input was found"
			continue
		fi
		exit 1
	done
done
