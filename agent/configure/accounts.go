package configure

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/alpinist/alpinist/agent/pkgdisk"
)

// accounts creates groups and users as Alpine's busybox addgroup and
// adduser -D do, editing /etc/group, /etc/passwd and /etc/shadow in Go
// (so it works whatever tools the target has): ids from 1000 up, a group
// named after each user unless one is given, GECOS "Linux User,,,", the
// password locked ("!", or "*" for a user with SSH keys, whom OpenSSH
// would refuse with "!") unless a hash is given, the home directory made
// from /etc/skel and owned by the user; then SSH authorized_keys.
//
// root exists already: a users entry for it sets its password, shell
// and keys. Whatever the spec says, root is never left without a
// password: an empty one is locked ("*").
func accounts(target string, cfg pkgdisk.Config, epoch int64) error {
	db, err := readAccounts(target)
	if err != nil {
		return err
	}
	changed := len(cfg.Groups) > 0 || len(cfg.Users) > 0
	for _, r := range db.shadow {
		if r[0] == "root" && len(r) > 1 && r[1] == "" {
			r[1], changed = "*", true
		}
	}
	if !changed {
		return nil
	}
	for _, g := range cfg.Groups {
		if db.group(g.Name) != nil {
			continue
		}
		gid := g.GID
		if gid == 0 {
			gid = db.freeGID(1000)
		} else if db.gidUsed(gid) {
			return fmt.Errorf("groups: %s: gid %d is taken", g.Name, gid)
		}
		db.groups = append(db.groups, []string{g.Name, "x", strconv.Itoa(gid), ""})
	}
	for _, u := range cfg.Users {
		if u.Name == "root" {
			if err := db.root(target, u); err != nil {
				return err
			}
			continue
		}
		if db.user(u.Name) != nil {
			return fmt.Errorf("users: %s already exists in the target's /etc/passwd", u.Name)
		}
		uid := u.UID
		if uid == 0 {
			uid = db.freeUID(1000)
		} else if db.uidUsed(uid) {
			return fmt.Errorf("users: %s: uid %d is taken", u.Name, uid)
		}
		var gid int
		if u.Group != "" {
			g := db.group(u.Group)
			if g == nil {
				return fmt.Errorf("users: %s: group %s does not exist (add it under groups:)", u.Name, u.Group)
			}
			gid, _ = strconv.Atoi(g[2])
		} else {
			if db.group(u.Name) != nil {
				return fmt.Errorf("users: %s: a group %s exists already; give group: to use it", u.Name, u.Name)
			}
			gid = uid
			if db.gidUsed(gid) {
				gid = db.freeGID(1000)
			}
			db.groups = append(db.groups, []string{u.Name, "x", strconv.Itoa(gid), ""})
		}
		for _, name := range u.Groups {
			g := db.group(name)
			if g == nil {
				return fmt.Errorf("users: %s: group %s does not exist (add it under groups:)", u.Name, name)
			}
			if g[3] == "" {
				g[3] = u.Name
			} else {
				g[3] += "," + u.Name
			}
		}
		// "!" is adduser -D's locked password; OpenSSH (built without
		// PAM, as Alpine's) refuses every login to an account whose
		// password starts with "!", keys too. A user given keys and no
		// password gets "*": no password matches it, and keys work.
		pw := "!"
		switch {
		case u.Password != "":
			pw = u.Password
		case len(u.AuthorizedKeys) > 0:
			pw = "*"
		}
		db.passwd = append(db.passwd, []string{u.Name, "x", strconv.Itoa(uid), strconv.Itoa(gid), "Linux User,,,", u.Home, u.Shell})
		db.shadow = append(db.shadow, []string{u.Name, pw, strconv.FormatInt(epoch/86400, 10), "0", "99999", "7", "", "", ""})
		if err := makeHome(target, u.Home, uid, gid); err != nil {
			return fmt.Errorf("users: %s: %w", u.Name, err)
		}
		if len(u.AuthorizedKeys) > 0 {
			if err := authorizedKeys(target, u, uid, gid); err != nil {
				return err
			}
		}
	}
	return db.write(target)
}

// root sets root's password, shell and SSH keys.
func (db *accountDB) root(target string, u pkgdisk.User) error {
	pw := db.user("root")
	if pw == nil || len(pw) < 7 {
		return fmt.Errorf("users: the target's /etc/passwd has no root entry")
	}
	if u.Shell != "" {
		pw[6] = u.Shell
	}
	if u.Password != "" {
		found := false
		for _, r := range db.shadow {
			if r[0] == "root" && len(r) > 1 {
				r[1], found = u.Password, true
			}
		}
		if !found {
			return fmt.Errorf("users: the target's /etc/shadow has no root entry")
		}
	}
	if len(u.AuthorizedKeys) > 0 {
		u.Home = pw[5]
		return authorizedKeys(target, u, 0, 0)
	}
	return nil
}

type accountDB struct {
	passwd, shadow [][]string
	groups         [][]string
}

func readTable(target, name string) ([][]string, error) {
	data, err := os.ReadFile(filepath.Join(target, "etc", name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if l != "" {
			out = append(out, strings.Split(l, ":"))
		}
	}
	return out, nil
}

func readAccounts(target string) (*accountDB, error) {
	db := &accountDB{}
	var err error
	if db.passwd, err = readTable(target, "passwd"); err != nil {
		return nil, err
	}
	if db.groups, err = readTable(target, "group"); err != nil {
		return nil, err
	}
	if db.shadow, err = readTable(target, "shadow"); err != nil {
		return nil, err
	}
	for _, t := range [][][]string{db.passwd, db.groups} {
		for _, r := range t {
			if len(r) < 4 {
				return nil, fmt.Errorf("users: malformed line %q in the target's account files", strings.Join(r, ":"))
			}
		}
	}
	return db, nil
}

func (db *accountDB) user(name string) []string {
	for _, r := range db.passwd {
		if r[0] == name {
			return r
		}
	}
	return nil
}

func (db *accountDB) group(name string) []string {
	for _, r := range db.groups {
		if r[0] == name {
			return r
		}
	}
	return nil
}

func (db *accountDB) uidUsed(id int) bool { return used(db.passwd, 2, id) }
func (db *accountDB) gidUsed(id int) bool { return used(db.groups, 2, id) }

func used(t [][]string, col, id int) bool {
	for _, r := range t {
		if n, err := strconv.Atoi(r[col]); err == nil && n == id {
			return true
		}
	}
	return false
}

func (db *accountDB) freeUID(from int) int {
	for id := from; ; id++ {
		if !db.uidUsed(id) {
			return id
		}
	}
}

func (db *accountDB) freeGID(from int) int {
	for id := from; ; id++ {
		if !db.gidUsed(id) {
			return id
		}
	}
}

// write replaces the account files (shadow keeps its mode and group).
func (db *accountDB) write(target string) error {
	for _, f := range []struct {
		name string
		rows [][]string
		mode os.FileMode
	}{{"passwd", db.passwd, 0o644}, {"group", db.groups, 0o644}, {"shadow", db.shadow, 0o640}} {
		p := filepath.Join(target, "etc", f.name)
		var b strings.Builder
		for _, r := range f.rows {
			// The spec refuses these; a field holding a separator or a
			// newline would forge another account all the same.
			for _, field := range r {
				if strings.ContainsAny(field, ":\n\r\x00") {
					return fmt.Errorf("users: /etc/%s: refusing a field with ':' or a newline: %q", f.name, field)
				}
			}
			b.WriteString(strings.Join(r, ":") + "\n")
		}
		mode, uid, gid := f.mode, 0, 0
		if st, err := os.Stat(p); err == nil {
			mode = st.Mode().Perm()
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(sys.Uid), int(sys.Gid)
			}
		}
		tmp := p + ".alpinist-tmp"
		if err := os.WriteFile(tmp, []byte(b.String()), mode); err != nil {
			return err
		}
		if err := errors.Join(os.Chmod(tmp, mode), os.Lchown(tmp, uid, gid), os.Rename(tmp, p)); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("users: /etc/%s: %w", f.name, err)
		}
	}
	return nil
}

// makeHome creates a home directory from /etc/skel, owned by the user.
func makeHome(target, home string, uid, gid int) error {
	dir := filepath.Join(target, home)
	if _, err := os.Lstat(dir); err == nil {
		return nil // adduser leaves an existing home alone
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	skel := filepath.Join(target, "etc", "skel")
	if _, err := os.Stat(skel); err == nil {
		if err := os.CopyFS(dir, os.DirFS(skel)); err != nil {
			return err
		}
	}
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// authorizedKeys writes HOME/.ssh/authorized_keys (0600 in a 0700 .ssh),
// owned by the user.
func authorizedKeys(target string, u pkgdisk.User, uid, gid int) error {
	home := filepath.Join(target, u.Home)
	if fi, err := os.Lstat(home); err != nil || !fi.IsDir() {
		return fmt.Errorf("users: %s: home %s is not a directory", u.Name, u.Home)
	}
	ssh := filepath.Join(home, ".ssh")
	if err := os.Mkdir(ssh, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := os.Chmod(ssh, 0o700); err != nil {
		return err
	}
	keys := filepath.Join(ssh, "authorized_keys")
	if err := os.WriteFile(keys, []byte(strings.Join(u.AuthorizedKeys, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	for _, p := range []string{ssh, keys} {
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
