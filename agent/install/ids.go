package install

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// ids resolves the owner names of a package's tar entries against the
// target's own /etc/passwd and /etc/group, as apk does
// (apk_resolve_uid, apk_resolve_gid): a name found there gives its id,
// else the entry's number stands. Scripts change those files (a
// pre-install adds its user), so the answers are forgotten after each
// script (apk_id_cache_reset).
type ids struct {
	st     *state
	users  map[string]int
	groups map[string]int
}

func (c *ids) reset() { c.users, c.groups = nil, nil }

func (c *ids) uid(name string, def int) int {
	if c.users == nil {
		c.users = c.read("etc/passwd", 7)
	}
	if id, ok := c.users[name]; ok {
		return id
	}
	return def
}

func (c *ids) gid(name string, def int) int {
	if c.groups == nil {
		c.groups = c.read("etc/group", 4)
	}
	if id, ok := c.groups[name]; ok {
		return id
	}
	return def
}

// read maps each name of the file to its id (the third field), the
// first line of a name winning, as a walk with musl's fgetpwent finds
// it; lines with fewer than fields fields or a bad id are skipped, as
// musl skips them.
func (c *ids) read(file string, fields int) map[string]int {
	// The package being installed may be writing it (an error comes
	// out of the package's own flush).
	c.st.writers.flush()
	data, err := c.st.root.ReadFile(file)
	if err != nil {
		return map[string]int{}
	}
	return parseIDs(data, fields)
}

// parseIDs reads passwd (fields 7) or group (fields 4) lines: a package's
// scripts wrote them, so they are untrusted.
func parseIDs(data []byte, fields int) map[string]int {
	m := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", fields)
		if len(f) < fields {
			continue
		}
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := m[f[0]]; !dup {
			m[f[0]] = int(id)
		}
	}
	return m
}
