package version

import "os/exec"

func chrootSh(root, script string) (string, error) {
	cmd := exec.Command("chroot", root, "/bin/sh", script)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
