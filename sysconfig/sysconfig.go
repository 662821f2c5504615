// Package sysconfig declares the accounts and network a built system is
// configured with, once for both ends: the spec parses into these types
// and the agent's manifest carries them, as JSON, to the build VM.
package sysconfig

// Group is a group to create (GID 0: the next free one, as addgroup
// picks it).
type Group struct {
	Name string `json:"name"`
	GID  int    `json:"gid,omitempty"`
}

// User is a user to create, as Alpine's adduser does (with a group of the
// same name unless Group is given).
type User struct {
	Name string `json:"name"`
	UID  int    `json:"uid,omitempty"` // 0: the next free one from 1000
	// Group is the primary group ("": a new group named after the user).
	Group string `json:"group,omitempty"`
	// Groups are supplementary groups (they must exist or be created by
	// the spec or the packages).
	Groups []string `json:"groups,omitempty"`
	Home   string   `json:"home"`  // default /home/NAME
	Shell  string   `json:"shell"` // default /bin/sh
	// Password is a crypt(3) hash ("$6$...", "$y$...") or "" (login by
	// password locked). Plain text is refused.
	Password string `json:"password,omitempty"`
	// AuthorizedKeys become ~/.ssh/authorized_keys (0600, .ssh 0700).
	AuthorizedKeys []string `json:"authorized_keys,omitempty"`
}

// Network is the content of /etc/network/interfaces and resolv.conf.
type Network struct {
	Interfaces []Interface `json:"interfaces,omitempty"`
	// DNS servers, written to /etc/resolv.conf.
	DNS []string `json:"dns,omitempty"`
}

// Interface is one entry of /etc/network/interfaces.
type Interface struct {
	Name string `json:"name"`
	// DHCP configures the interface with udhcpc.
	DHCP bool `json:"dhcp,omitempty"`
	// Addresses are static addresses in CIDR form (IPv4 and IPv6).
	Addresses []string `json:"addresses,omitempty"`
	// Gateways are default routers, at most one per address family.
	Gateways []string `json:"gateways,omitempty"`
}

// DefaultNetwork is what a disk image gets when the spec has no network:
// DHCP on eth0.
var DefaultNetwork = Network{Interfaces: []Interface{{Name: "eth0", DHCP: true}}}
