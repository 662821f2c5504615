// Package epoch reads SOURCE_DATE_EPOCH, the one date every time in a
// reproducible output comes from.
package epoch

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// FromEnv returns $SOURCE_DATE_EPOCH, or ok false when unset.
func FromEnv() (t time.Time, ok bool, err error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, false, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a non-negative number of seconds", v)
	}
	return time.Unix(n, 0).UTC(), true, nil
}
