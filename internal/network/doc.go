// Package network gives each instance a network namespace of its own,
// wired to the host by one veth: the instance has lo and eth0, an address
// of a /30 out of its serve's block of Subnet, and a default route to the
// host's end. The host forwards what the instance sends out and
// masquerades it, as a container runtime does; its nftables table (one per
// serve) drops what an instance sends to the host itself (so the control
// API and anything listening on the host are out of reach, loopback being
// the instance's own), to another instance, of this serve or another, and
// to link-local addresses (a cloud's metadata service), and what comes to
// an instance on a connection it did not open. Serve may let instances
// reach some of the host's loopback ports (a database on the same
// machine): they connect to HostAddr, which the host sends on to
// 127.0.0.1 (route_localnet on the instance's link, a DNAT rule per port).
//
// The namespaces are made by serve, in the host's user namespace: the
// instance's root, which is root only of its own user namespace, cannot
// change its addresses, routes or rules. Making one (unshare, a veth, two
// addresses, a route) costs a few milliseconds, so serve keeps a few made
// ahead and a cold start takes one. Serves on one host take different
// blocks, each held by a lock file in LockDir.
package network
