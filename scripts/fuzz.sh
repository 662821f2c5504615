#!/bin/sh
# Run every Go fuzz target in the module for the given time (default 30s).
set -eu
t=${1:-30s}
go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "fuzz: $pkg $f ($t)"
		go test -run "^$" -fuzz "^$f\$" -fuzztime "$t" -fuzzminimizetime 2s -parallel 2 "$pkg"
	done
done
