package install

import (
	"strings"
	"testing"
)

func TestParseIDs(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/sh\nchrony:x:100:101:chrony:/var/log/chrony:/sbin/nologin\n" +
		"broken:x:1\n#comment:x:5:5::/:/bin/sh\nbad:x:notanumber:1::/:/bin/sh\nchrony:x:999:999::/:/bin/sh\nbig:x:4294967296:0::/:/bin/sh\n"
	got := parseIDs([]byte(passwd), 7)
	want := map[string]int{"root": 0, "chrony": 100, "#comment": 5}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	if g := parseIDs([]byte("wheel:x:10:root,alice\nshort:x\n"), 4); len(g) != 1 || g["wheel"] != 10 {
		t.Errorf("group: %v", g)
	}
}

// FuzzParseIDs: passwd and group files that scripts wrote never panic,
// and every id read is one the file has on the line of its name.
func FuzzParseIDs(f *testing.F) {
	f.Add([]byte("root:x:0:0:root:/root:/bin/sh\nchrony:x:100:101:chrony:/var/log/chrony:/sbin/nologin\n"), 7)
	f.Add([]byte("wheel:x:10:root\n"), 4)
	f.Add([]byte(strings.Repeat("a:", 100)), 4)
	f.Fuzz(func(t *testing.T, data []byte, fields int) {
		if fields < 3 || fields > 8 {
			return
		}
		for name, id := range parseIDs(data, fields) {
			if id < 0 || !strings.Contains(string(data), name+":") {
				t.Fatalf("%q -> %d from %q", name, id, data)
			}
		}
	})
}
