package version

import (
	"fmt"
	"strings"
)

// Token types of the apk version grammar:
// {digit}{.digit}...{letter}{_suf{#}}...{-r#}. Their order matters: a
// version's tokens must not go backwards except where next allows it.
type token int

const (
	tInvalid token = iota - 1
	tDigitOrZero
	tDigit
	tLetter
	tSuffix
	tSuffixNo
	tRevisionNo
	tEnd
)

var (
	preSuffixes  = []string{"alpha", "beta", "pre", "rc"}
	postSuffixes = []string{"cvs", "svn", "git", "hg", "p"}
)

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }

// next reads the separator before the next token and sets t to its type.
func next(t *token, s *string) {
	n := tInvalid
	switch b := *s; {
	case len(b) == 0 || b[0] == 0:
		n = tEnd
	case (*t == tDigit || *t == tDigitOrZero) && isLower(b[0]):
		n = tLetter
	case *t == tLetter && isDigit(b[0]):
		n = tDigit
	case *t == tSuffix && isDigit(b[0]):
		n = tSuffixNo
	default:
		switch b[0] {
		case '.':
			n = tDigitOrZero
		case '_':
			n = tSuffix
		case '-':
			if len(b) > 1 && b[1] == 'r' {
				n = tRevisionNo
				b = b[1:]
			}
		}
		*s = b[1:]
	}
	if n < *t {
		if !((n == tDigitOrZero && *t == tDigit) ||
			(n == tSuffix && *t == tSuffixNo) ||
			(n == tDigit && *t == tLetter)) {
			n = tInvalid
		}
	}
	*t = n
}

// get reads the token of type *t at the start of s, returns its value and
// advances *t to the type of the following token.
func get(t *token, s *string) int64 {
	b := *s
	if len(b) == 0 {
		*t = tEnd
		return 0
	}
	i := 0
	nt := tInvalid
	var v int64
	switch *t {
	case tDigitOrZero:
		// Leading zeros are special: "1.01" sorts before "1.1".
		if b[0] == '0' {
			for i+1 < len(b) && b[i+1] == '0' {
				i++
			}
			nt = tDigit
			v = -int64(i)
			break
		}
		fallthrough
	case tDigit, tSuffixNo, tRevisionNo:
		for i < len(b) && isDigit(b[i]) {
			v = v*10 + int64(b[i]-'0')
			i++
		}
		if i >= 18 {
			*t = tInvalid
			return -1
		}
	case tLetter:
		v = int64(b[0])
		i = 1
	case tSuffix:
		found := false
		for k, suf := range preSuffixes {
			if strings.HasPrefix(b, suf) {
				v, i, found = int64(k-len(preSuffixes)), len(suf), true
				break
			}
		}
		if !found {
			for k, suf := range postSuffixes {
				if strings.HasPrefix(b, suf) {
					v, i, found = int64(k), len(suf), true
					break
				}
			}
		}
		if !found {
			*t = tInvalid
			return -1
		}
	default:
		*t = tInvalid
		return -1
	}
	*s = b[i:]
	switch {
	case len(*s) == 0:
		*t = tEnd
	case nt != tInvalid:
		*t = nt
	default:
		next(t, s)
	}
	return v
}

// Valid reports whether s is a valid apk version string.
func Valid(s string) bool {
	t := tDigit
	for t != tEnd && t != tInvalid {
		get(&t, &s)
	}
	return t == tEnd
}

// Compare compares two versions as apk-tools does and returns Less, Equal
// or Greater (a relative to b). Invalid versions compare as far as their
// valid prefix and then by where they became invalid, as in apk-tools.
func Compare(a, b string) Op { return compare(a, b, false) }

// CompareFuzzy is Compare, except that when one version is a prefix of the
// other (token-wise) they are Equal: the "~" operator's comparison.
func CompareFuzzy(a, b string) Op { return compare(a, b, true) }

func compare(a, b string, fuzzy bool) Op {
	at, bt := tDigit, tDigit
	var av, bv int64
	for at == bt && at != tEnd && at != tInvalid && av == bv {
		av = get(&at, &a)
		bv = get(&bt, &b)
	}
	if av < bv {
		return Less
	}
	if av > bv {
		return Greater
	}
	if at == bt || fuzzy {
		return Equal
	}
	// The common prefix is equal: the longer version is greater unless what
	// follows is a pre-release suffix.
	if at == tSuffix {
		tt := at
		if get(&tt, &a) < 0 {
			return Less
		}
	}
	if bt == tSuffix {
		tt := bt
		if get(&tt, &b) < 0 {
			return Greater
		}
	}
	if at > bt {
		return Less
	}
	if bt > at {
		return Greater
	}
	return Equal
}

// Match reports whether version have satisfies the constraint "op want",
// as apk_dep_is_provided does: Any matches everything; otherwise the result
// of comparing have with want (fuzzily when op has Fuzzy) must be in op.
// The Checksum op ("><", NAME><Q1...) compares package checksums, not
// versions: Match returns false for it and callers must compare checksums.
func Match(have string, op Op, want string) bool {
	if op == Checksum {
		return false
	}
	if op&Any == Any {
		return true
	}
	return compare(have, want, op&Fuzzy != 0)&op != 0
}

// String gives the operator as apk-tools writes it (apk_version_op_string):
// "<", "<=", "=", ">=", ">", "~" (for Fuzzy and Equal|Fuzzy) and "><"
// (Checksum). Every other set, including Any and the "<~" and ">~" that
// ParseOp accepts, is "?", exactly as apk-tools 2.14 prints it; so a
// dependency written with those does not read back (apk has the same flaw).
func (o Op) String() string {
	switch o {
	case Less:
		return "<"
	case Less | Equal:
		return "<="
	case Equal | Fuzzy, Fuzzy:
		return "~"
	case Equal:
		return "="
	case Greater | Equal:
		return ">="
	case Greater:
		return ">"
	case Checksum:
		return "><"
	}
	return "?"
}

// ParseOp parses a relational operator the way apk-tools reads one in a
// dependency (apk_blob_pull_dep): a non-empty run of the characters < > = ~,
// each adding to the set ('<' Less, '>' Greater, '=' Equal, '~' Fuzzy and
// Equal), so "<~" and ">~" are the fuzzy bounds and "><" is Checksum. The
// operators of `apk version -l` (apk_version_result_mask: "<", "<=", "=",
// ">=", ">") give the same sets. Any other character is an error.
func ParseOp(s string) (Op, error) {
	if s == "" {
		return 0, fmt.Errorf("empty operator")
	}
	var o Op
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			o |= Less
		case '>':
			o |= Greater
		case '=':
			o |= Equal
		case '~':
			o |= Fuzzy | Equal
		default:
			return 0, fmt.Errorf("operator %q: unexpected %q", s, s[i])
		}
	}
	return o, nil
}
