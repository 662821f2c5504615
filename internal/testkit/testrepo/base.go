package testrepo

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
)

// Versions of the generated (not Debian-derived) base packages.
const (
	baselayoutVersion = "3.6.5-r0" // as Alpine 3.20
	releaseVersion    = "3.20.0-r0"
	releaseID         = "3.20.0"
)

// buildBase makes alpine-baselayout, alpine-baselayout-data,
// alpine-release and alpine-base, split as Alpine splits them.
func buildBase(ctx context.Context, b *builder) ([]*Pkg, error) {
	layout := newPkg("alpine-baselayout", baselayoutVersion, b.arch, "Alpine base dir structure and init scripts", "GPL-2.0-only")
	layout.Meta.Depends = deps("alpine-baselayout-data="+baselayoutVersion, "/bin/sh")
	layout.Meta.ReplacesPriority = 1000
	buildLayoutTree(layout.Tree)
	layout.Scripts["pre-install"] = []byte("#!/bin/sh\n\naddgroup -S -g 42 shadow 2>/dev/null\n\nexit 0\n")
	layout.Scripts["post-install"] = []byte(`#!/bin/sh

# the /etc/group file is created after /etc/shadow. Needed to apply the group
# properly.
chown root:shadow etc/shadow
[ -e etc/shadow- ] && chown root:shadow etc/shadow-

exit 0
`)

	data := newPkg("alpine-baselayout-data", baselayoutVersion, b.arch, "Alpine base dir structure and init scripts", "GPL-2.0-only")
	data.Meta.Origin = "alpine-baselayout"
	data.Meta.Replaces = deps("alpine-baselayout")
	data.Meta.ReplacesPriority = 1000
	buildLayoutData(data.Tree)

	rel := newPkg("alpine-release", releaseVersion, b.arch, "Alpine release data", "MIT")
	t := rel.Tree
	must(t.File("etc/alpine-release", 0o644, []byte(releaseID+"\n")))
	must(t.File("etc/issue", 0o644, []byte("Welcome to Alpine Linux 3.20 (alpinist test repository)\nKernel \\r on an \\m (\\l)\n\n")))
	must(t.File("etc/os-release", 0o644, []byte(`NAME="Alpine Linux"
ID=alpine
VERSION_ID=`+releaseID+`
PRETTY_NAME="Alpine Linux v3.20 (alpinist test repository)"
HOME_URL="`+projectURL+`"
`)))

	base := newPkg("alpine-base", releaseVersion, b.arch, "Meta package for minimal alpine base", "MIT")
	base.Meta.Depends = deps("alpine-baselayout", "alpine-release="+releaseVersion, "busybox")
	return []*Pkg{layout, data, rel, base}, nil
}

// buildLayoutTree fills alpine-baselayout's tree: the directory skeleton
// with Alpine's modes and the /var symlinks.
func buildLayoutTree(t *Tree) {
	dirs := []struct {
		p    string
		mode fs.FileMode
	}{
		{"dev", 0o755}, {"dev/pts", 0o755}, {"dev/shm", 0o755},
		{"etc", 0o755}, {"etc/crontabs", 0o755}, {"etc/modprobe.d", 0o755},
		{"etc/modules-load.d", 0o755}, {"etc/network", 0o755},
		{"etc/network/if-down.d", 0o755}, {"etc/network/if-post-down.d", 0o755},
		{"etc/network/if-pre-up.d", 0o755}, {"etc/network/if-up.d", 0o755},
		{"etc/opt", 0o755}, {"etc/periodic", 0o755}, {"etc/periodic/15min", 0o755},
		{"etc/periodic/daily", 0o755}, {"etc/periodic/hourly", 0o755},
		{"etc/periodic/monthly", 0o755}, {"etc/periodic/weekly", 0o755},
		{"etc/profile.d", 0o755}, {"etc/sysctl.d", 0o755},
		{"home", 0o755}, {"lib", 0o755}, {"lib/firmware", 0o755},
		{"lib/modules-load.d", 0o755}, {"lib/sysctl.d", 0o755},
		{"media", 0o755}, {"media/cdrom", 0o755}, {"media/floppy", 0o755}, {"media/usb", 0o755},
		{"mnt", 0o755}, {"opt", 0o755}, {"proc", 0o555}, {"root", 0o700},
		{"run", 0o755}, {"sbin", 0o755}, {"srv", 0o755}, {"sys", 0o555},
		{"tmp", 0o1777},
		{"usr", 0o755}, {"usr/bin", 0o755}, {"usr/lib", 0o755},
		{"usr/lib/modules-load.d", 0o755}, {"usr/local", 0o755},
		{"usr/local/bin", 0o755}, {"usr/local/lib", 0o755}, {"usr/local/share", 0o755},
		{"usr/sbin", 0o755}, {"usr/share", 0o755}, {"usr/share/man", 0o755},
		{"usr/share/misc", 0o755},
		{"var", 0o755}, {"var/cache", 0o755}, {"var/cache/misc", 0o755},
		{"var/empty", 0o555}, {"var/lib", 0o755}, {"var/lib/misc", 0o755},
		{"var/local", 0o755}, {"var/lock", 0o755}, {"var/lock/subsys", 0o755},
		{"var/log", 0o755}, {"var/mail", 0o755}, {"var/opt", 0o755},
		{"var/spool", 0o755}, {"var/spool/cron", 0o755}, {"var/tmp", 0o1777},
	}
	for _, d := range dirs {
		must(t.Dir(d.p, d.mode, 0, 0))
	}
	must(t.Symlink("var/run", "/run"))
	must(t.Symlink("var/spool/mail", "/var/mail"))
	must(t.Symlink("var/spool/cron/crontabs", "/etc/crontabs"))
	must(t.File("etc/motd", 0o644, []byte("Welcome to Alpine (alpinist test repository)!\n\nThis system was built from a synthetic repository made for alpinist's tests.\n\n")))
	must(t.File("etc/crontabs/root", 0o600, []byte(`# do daily/weekly/monthly maintenance
# min	hour	day	month	weekday	command
*/15	*	*	*	*	run-parts /etc/periodic/15min
0	*	*	*	*	run-parts /etc/periodic/hourly
0	2	*	*	*	run-parts /etc/periodic/daily
0	3	*	*	6	run-parts /etc/periodic/weekly
0	5	1	*	*	run-parts /etc/periodic/monthly
`)))
	must(t.File("etc/modprobe.d/aliases.conf", 0o644, []byte("# Aliases to tell insmod/modprobe which modules to use\n\nalias net-pf-10 ipv6\n")))
	must(t.File("etc/modprobe.d/blacklist.conf", 0o644, []byte("# Do not load these modules automatically\nblacklist pcspkr\n")))
	must(t.File("etc/profile.d/README", 0o644, []byte("This directory should contain shell scripts configuring system-wide\nenvironment on users' shells.\n")))
	must(t.File("etc/profile.d/20locale.sh", 0o644, []byte("# environment variables for locale\nexport CHARSET=${CHARSET:-UTF-8}\nexport LANG=${LANG:-C.UTF-8}\nexport LC_COLLATE=${LC_COLLATE:-C}\n")))
	must(t.File("lib/sysctl.d/00-alpine.conf", 0o644, []byte("net.ipv4.tcp_syncookies = 1\nkernel.panic = 120\n")))
}

// The account databases, as Alpine's alpine-baselayout-data has them.
const (
	passwdText = `root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
lp:x:4:7:lp:/var/spool/lpd:/sbin/nologin
sync:x:5:0:sync:/sbin:/bin/sync
shutdown:x:6:0:shutdown:/sbin:/sbin/shutdown
halt:x:7:0:halt:/sbin:/sbin/halt
mail:x:8:12:mail:/var/mail:/sbin/nologin
news:x:9:13:news:/usr/lib/news:/sbin/nologin
uucp:x:10:14:uucp:/var/spool/uucppublic:/sbin/nologin
cron:x:16:16:cron:/var/spool/cron:/sbin/nologin
ftp:x:21:21::/var/lib/ftp:/sbin/nologin
sshd:x:22:22:sshd:/dev/null:/sbin/nologin
games:x:35:35:games:/usr/games:/sbin/nologin
ntp:x:123:123:NTP:/var/empty:/sbin/nologin
guest:x:405:100:guest:/dev/null:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
`
	groupText = `root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
sys:x:3:root,bin
adm:x:4:root,daemon
tty:x:5:
disk:x:6:root
lp:x:7:lp
kmem:x:9:
wheel:x:10:root
floppy:x:11:root
mail:x:12:mail
news:x:13:news
uucp:x:14:uucp
cron:x:16:cron
audio:x:18:
cdrom:x:19:
dialout:x:20:root
ftp:x:21:
sshd:x:22:
input:x:23:
tape:x:26:root
video:x:27:root
netdev:x:28:
kvm:x:34:kvm
games:x:35:
shadow:x:42:
www-data:x:82:
users:x:100:games
ntp:x:123:
abuild:x:300:
utmp:x:406:
ping:x:999:
nogroup:x:65533:
nobody:x:65534:
`
	profileText = `export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

export PAGER=less
umask 022

# use nicer PS1 for bash and busybox ash
if [ -n "$BASH_VERSION" -o "$BB_ASH_VERSION" ]; then
	PS1='\h:\w\$ '
# use nicer PS1 for zsh
elif [ -n "$ZSH_VERSION" ]; then
	PS1='%m:%~%# '
# set up fallback default PS1
else
	: "${HOSTNAME:=$(hostname)}"
	PS1='${HOSTNAME%%.*}:$PWD'
	[ "$(id -u)" -eq 0 ] && PS1="${PS1}# " || PS1="${PS1}\$ "
fi

for script in /etc/profile.d/*.sh ; do
	if [ -r "$script" ] ; then
		. "$script"
	fi
done
unset script
`
	inittabText = `# /etc/inittab

::sysinit:/sbin/openrc sysinit
::sysinit:/sbin/openrc boot
::wait:/sbin/openrc default

# Set up a couple of getty's
tty1::respawn:/sbin/getty 38400 tty1
tty2::respawn:/sbin/getty 38400 tty2

# Put a getty on the serial port
#ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100

# Stuff to do for the 3-finger salute
::ctrlaltdel:/sbin/reboot

# Stuff to do before rebooting
::shutdown:/sbin/openrc shutdown
`
)

// shadowText locks every account of passwdText (root has no password).
func shadowText() string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(passwdText), "\n") {
		name, _, _ := strings.Cut(l, ":")
		pw := "!"
		if name == "root" {
			pw = "*"
		}
		fmt.Fprintf(&b, "%s:%s::0:::::\n", name, pw)
	}
	return b.String()
}

// buildLayoutData fills alpine-baselayout-data: the /etc files.
func buildLayoutData(t *Tree) {
	must(t.File("etc/fstab", 0o644, []byte("/dev/cdrom\t/media/cdrom\tiso9660\tnoauto,ro 0 0\n/dev/usbdisk\t/media/usb\tvfat\tnoauto,ro 0 0\n")))
	must(t.File("etc/group", 0o644, []byte(groupText)))
	must(t.File("etc/hostname", 0o644, []byte("localhost\n")))
	must(t.File("etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost localhost.localdomain\n::1\t\tlocalhost localhost.localdomain\n")))
	must(t.File("etc/inittab", 0o644, []byte(inittabText)))
	must(t.File("etc/modules", 0o644, []byte("af_packet\nipv6\n")))
	must(t.Symlink("etc/mtab", "/proc/mounts"))
	must(t.File("etc/nsswitch.conf", 0o644, []byte("# musl itself does not support NSS.\nhosts: files dns\n")))
	must(t.File("etc/passwd", 0o644, []byte(passwdText)))
	must(t.File("etc/profile", 0o644, []byte(profileText)))
	must(t.File("etc/protocols", 0o644, []byte("ip\t0\tIP\nicmp\t1\tICMP\ntcp\t6\tTCP\nudp\t17\tUDP\nipv6-icmp\t58\tIPv6-ICMP\n")))
	must(t.File("etc/services", 0o644, []byte("ssh\t\t22/tcp\ndomain\t\t53/tcp\ndomain\t\t53/udp\nhttp\t\t80/tcp\nntp\t\t123/udp\nhttps\t\t443/tcp\n")))
	must(t.FileOwned("etc/shadow", 0o640, 0, 42, []byte(shadowText())))
	must(t.File("etc/shells", 0o644, []byte("# valid login shells\n/bin/sh\n/bin/ash\n")))
	must(t.File("etc/sysctl.conf", 0o644, []byte("# content of this file will override /etc/sysctl.d/*\n")))
}

// buildBusybox makes busybox from Debian's busybox-static: /bin/busybox,
// the /bin/sh link, and Alpine's install script and trigger.
func buildBusybox(ctx context.Context, b *builder) ([]*Pkg, error) {
	deb, err := b.debian.Get(ctx, "busybox-static", b.debArch)
	if err != nil {
		return nil, err
	}
	ver, err := APKVersion(deb.Version)
	if err != nil {
		return nil, fmt.Errorf("debian %s: %w", deb, err)
	}
	bin := filepath.Join(b.workDir("busybox"), "busybox")
	found := false
	err = WalkDeb(ctx, deb, func(name string, hdr *tar.Header, r io.Reader) error {
		// bookworm has bin/busybox; trixie (merged /usr) usr/bin/busybox.
		if (name != "bin/busybox" && name != "usr/bin/busybox") || hdr.Typeflag != tar.TypeReg {
			return nil
		}
		found = true
		return writeFile(bin, r)
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("debian %s: bin/busybox: not in the package", deb)
	}
	if interp, _, err := ELFDeps(bin); err != nil {
		return nil, fmt.Errorf("debian %s: %w", deb, err)
	} else if interp != "" {
		return nil, fmt.Errorf("debian %s: bin/busybox is dynamically linked (%s), want static", deb, interp)
	}

	p := newPkg("busybox", ver, b.arch, "Size optimized toolbox of many common UNIX utilities (from Debian "+deb.Package+" "+deb.Version+")", "GPL-2.0-only")
	p.Meta.Provides = deps("cmd:busybox="+ver, "cmd:sh="+ver, "/bin/sh")
	p.Meta.Triggers = []string{"/bin", "/usr/bin", "/sbin", "/usr/sbin", "/lib/modules/*"}
	t := p.Tree
	must(t.DiskFile("bin/busybox", 0o755, bin))
	must(t.Symlink("bin/sh", "/bin/busybox"))
	for _, d := range []string{"sbin", "usr/bin", "usr/sbin"} {
		must(t.Dir(d, 0o755, 0, 0))
	}
	must(t.Dir("tmp", 0o1777, 0, 0))
	must(t.File("etc/securetty", 0o644, []byte("console\ntty1\ntty2\nhvc0\nttyS0\nttyAMA0\n")))
	p.Scripts["post-install"] = []byte(`#!/bin/busybox sh

# We need the symlinks early
/bin/busybox mkdir -p "/bin" "/sbin" "/usr/bin" "/usr/sbin"
/bin/busybox --install -s || exit 1

exit 0
`)
	p.Scripts["trigger"] = []byte(`#!/bin/sh

do_bb_install=

for i in "$@"; do
	case "$i" in
		/lib/modules/*)
			# don't run busybox depmod if we have kmod installed
			target=$(readlink -f "$(command -v depmod || true)")
			if [ -d "$i" ] && [ "$target" = "/bin/busybox" ]; then
				/bin/busybox depmod ${i#/lib/modules/}
			fi
			;;
		*) do_bb_install=yes;;
	esac
done

if [ -n "$do_bb_install" ]; then
	/bin/busybox --install -s
fi
`)
	return []*Pkg{p}, nil
}
