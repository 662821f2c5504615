package epoch

import (
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if _, ok, err := FromEnv(); ok || err != nil {
		t.Errorf("unset: %v %v", ok, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if got, ok, err := FromEnv(); !ok || err != nil || !got.Equal(time.Unix(1700000000, 0)) || got.Location() != time.UTC {
		t.Errorf("set: %v %v %v", got, ok, err)
	}
	for _, bad := range []string{"-1", "soon", "1e9"} {
		t.Setenv("SOURCE_DATE_EPOCH", bad)
		if _, _, err := FromEnv(); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
