package testrepo

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	apkBaseRE  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*[a-z]?`)
	debTildeRE = regexp.MustCompile(`^(alpha|beta|pre|rc|cvs|svn|git|hg|p)([0-9]*)`)
)

// APKVersion maps a Debian version ([epoch:]upstream[-revision]) to a
// valid apk version NUMBERS[letter][_suffixN]-r0: the epoch, the Debian
// revision and repackaging tags (+dfsg1, +ds) are dropped, and a
// pre-release part after '~' becomes an apk suffix when apk has one
// (~rc1 -> _rc1, ~git20190206.bf6db5b4 -> _git20190206). Examples:
// "1:1.35.0-4+deb12u1+b1" -> "1.35.0-r0", "2.06-13+deb12u2" -> "2.06-r0",
// "3:6.04~git20190206.bf6db5b4+dfsg1-3" -> "6.04_git20190206-r0".
func APKVersion(deb string) (string, error) {
	v := deb
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		v = v[:i]
	}
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	pre := ""
	if i := strings.IndexByte(v, '~'); i >= 0 {
		v, pre = v[:i], v[i+1:]
	}
	base := apkBaseRE.FindString(v)
	if base == "" {
		return "", fmt.Errorf("testrepo: Debian version %q has no numeric upstream part", deb)
	}
	if m := debTildeRE.FindStringSubmatch(pre); m != nil {
		base += "_" + m[1] + m[2]
	}
	return base + "-r0", nil
}
