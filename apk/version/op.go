// Package version implements apk-tools' version strings: validation,
// comparison, and the relational operators used in dependencies.
package version

// Op is a set of comparison results a dependency accepts, as apk-tools'
// result masks: Equal, Less, Greater, Fuzzy, and their combinations.
type Op uint8

// The comparison results. Compare returns one of Less, Equal, Greater.
const (
	Equal   Op = 1
	Less    Op = 2
	Greater Op = 4
	Fuzzy   Op = 8

	Any      = Equal | Less | Greater | Fuzzy // no constraint
	Checksum = Less | Greater                 // NAME><Q1...: match a package checksum
)
