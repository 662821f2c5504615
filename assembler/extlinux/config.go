package extlinux

import (
	"fmt"
	"strings"
)

// Config is an extlinux.conf that boots one kernel at once.
type Config struct {
	// Serial is the serial port the loader talks on (0 for COM1), or -1
	// for none. The kernel's own console is in Append.
	Serial int
	// Kernel and Initrd are absolute paths in the file system
	// ("/boot/vmlinuz-virt"); Initrd may be empty.
	Kernel, Initrd string
	// Append is the kernel command line.
	Append string
	// Name is the file's name for its first line (default
	// extlinux.conf; isolinux.cfg for ISOLINUX, which reads the same
	// directives).
	Name string
}

// String renders the configuration file.
func (c Config) String() string {
	var b strings.Builder
	name := c.Name
	if name == "" {
		name = "extlinux.conf"
	}
	b.WriteString("# " + name + ", written by alpinist\n")
	if c.Serial >= 0 {
		// SERIAL comes first, so that everything the loader says goes there.
		fmt.Fprintf(&b, "SERIAL %d 115200\n", c.Serial)
	}
	b.WriteString("DEFAULT alpine\nPROMPT 0\nTIMEOUT 0\n\nLABEL alpine\n")
	fmt.Fprintf(&b, "  LINUX %s\n", c.Kernel)
	if c.Initrd != "" {
		fmt.Fprintf(&b, "  INITRD %s\n", c.Initrd)
	}
	if c.Append != "" {
		fmt.Fprintf(&b, "  APPEND %s\n", c.Append)
	}
	return b.String()
}
