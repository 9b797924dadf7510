package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses: serve takes a block of Subnet for its instances, a /30 each
// (the host's end, then the instance's).
var Subnet = netip.MustParsePrefix("10.87.0.0/16")

const (
	blockBits = 20 // a block is a /20: 1024 instances of one serve
	slotBits  = 30
	blocks    = 1 << (blockBits - 16)
	slots     = 1 << (slotBits - blockBits)

	// LinkPrefix starts the name of every instance's host-side veth.
	LinkPrefix = "shl"
	// InstanceLink is the instance's side of its veth, inside.
	InstanceLink = "eth0"
)

// HostAddr is where instances reach the host's ports that serve allows
// (see New): a link-local address every instance routes to the host, which
// sends a connection to one of those ports on to the host's loopback.
var HostAddr = netip.MustParseAddr("169.254.87.1")

// LockDir holds one lock file per block, held by the serve that uses it.
var LockDir = "/run/shoal"

// Network hands out network namespaces, each wired to the host.
type Network struct {
	// immutable after New
	block  int
	lock   *os.File // flock held on the block
	prefix string   // of the block's host-side links
	table  *nftables.Table
	host   netns.NsHandle // serve's own network namespace
	ports  []uint16       // of the host's loopback, reached at HostAddr

	mu     sync.Mutex
	free   []int // slots not in use, the longest free first
	closed bool
	spare  []*Namespace // made ahead; at most keep
	keep   int
	making bool
	done   sync.WaitGroup
}

// New takes a free block of addresses for this serve, sets up its
// forwarding and firewall rules, and keeps spare namespaces made ahead
// (their making costs a few milliseconds, which cold starts then skip).
// Instances reach the host's loopback on hostPorts (TCP), at HostAddr, and
// nothing else of the host. It needs root on the host.
func New(spare int, hostPorts ...uint16) (*Network, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("serve is not root: the host's network cannot be set up for instances")
	}
	host, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("network: serve's namespace: %w", err)
	}
	n := &Network{host: host, keep: spare, ports: hostPorts}
	if err := n.takeBlock(); err != nil {
		host.Close()
		return nil, err
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
		n.Close()
		return nil, fmt.Errorf("network: turn IPv4 forwarding on: %w", err)
	}
	if err := n.rules(); err != nil {
		n.Close()
		return nil, err
	}
	for i := range slots {
		n.free = append(n.free, i)
	}
	n.mu.Lock()
	n.refillLocked()
	n.mu.Unlock()
	return n, nil
}

// Check finds out whether New could set up the host here, changing
// nothing: serve is root, nftables answers, a network namespace can be
// made.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("serve is not root: the host's network cannot be set up for instances")
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("network: nftables: %w", err)
	}
	if _, err := c.ListTables(); err != nil {
		return fmt.Errorf("network: nftables: %w", err)
	}
	host, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("network: serve's namespace: %w", err)
	}
	defer host.Close()
	fd, err := (&Network{host: host}).newNamespace()
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	return fd.Close()
}

// Block is the block of addresses instances of this serve get.
func (n *Network) Block() netip.Prefix {
	return netip.PrefixFrom(addrAt(n.block, 0, 0), blockBits)
}

// takeBlock locks the first block no other serve holds and no route of
// the host overlaps, and removes what a dead serve left of it.
func (n *Network) takeBlock() error {
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("network: host routes: %w", err)
	}
	for b := range blocks {
		prefix := linkName(b, -1)
		block := netip.PrefixFrom(addrAt(b, 0, 0), blockBits)
		if overlapsRoute(block, routes, prefix) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(LockDir, fmt.Sprintf("net-%02x.lock", b)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("network: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		n.block, n.lock, n.prefix = b, f, prefix
		n.table = &nftables.Table{Family: nftables.TableFamilyIPv4, Name: fmt.Sprintf("shoal-%02x", b)}
		// A serve that was killed leaves its rules (its namespaces died
		// with their processes, and their veths with them).
		links, _ := netlink.LinkList()
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, prefix) {
				netlink.LinkDel(l)
			}
		}
		return nil
	}
	return fmt.Errorf("network: all %d blocks of %s are in use by other serves or overlap the host's routes", blocks, Subnet)
}

// overlapsRoute reports whether a route of the host, other than one of
// the block's own links, reaches into block.
func overlapsRoute(block netip.Prefix, routes []netlink.Route, ownPrefix string) bool {
	links := map[int]string{}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		addr, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue // the default route
		}
		if !netip.PrefixFrom(addr.Unmap(), ones).Overlaps(block) {
			continue
		}
		name, seen := links[r.LinkIndex]
		if !seen {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			links[r.LinkIndex] = name
		}
		if !strings.HasPrefix(name, ownPrefix) {
			return true
		}
	}
	return false
}

// Close removes the block's rules and spare namespaces and lets the
// block go; namespaces in use must be closed first.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	spare := n.spare
	n.spare = nil
	n.mu.Unlock()
	n.done.Wait()
	for _, ns := range spare {
		ns.Close()
	}
	if n.table != nil {
		if c, err := nftables.New(); err == nil {
			c.DelTable(n.table)
			c.Flush()
		}
	}
	if n.lock != nil {
		n.lock.Close()
	}
	n.host.Close()
}

// Namespace is one instance's network namespace: lo, and eth0 to the
// host.
type Namespace struct {
	n    *Network
	slot int
	fd   netns.NsHandle
	link string // the host's end

	// Addr is the instance's address; Gateway the host's end.
	Addr, Gateway netip.Addr
}

// Take returns a namespace for one instance, made ahead if one is spare.
func (n *Network) Take() (*Namespace, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, errors.New("network: closed")
	}
	if len(n.spare) > 0 {
		ns := n.spare[0]
		n.spare = n.spare[1:]
		n.refillLocked()
		n.mu.Unlock()
		return ns, nil
	}
	n.refillLocked()
	n.mu.Unlock()
	return n.make()
}

// refillLocked makes spare namespaces in the background until there are
// keep of them.
func (n *Network) refillLocked() {
	if n.making || n.closed || len(n.spare) >= n.keep {
		return
	}
	n.making = true
	n.done.Add(1)
	go func() {
		defer n.done.Done()
		for {
			n.mu.Lock()
			if n.closed || len(n.spare) >= n.keep {
				n.making = false
				n.mu.Unlock()
				return
			}
			n.mu.Unlock()
			ns, err := n.make()
			n.mu.Lock()
			if err != nil || n.closed {
				n.making = false
				n.mu.Unlock()
				if ns != nil {
					ns.Close()
				}
				return // Take makes its own, and says why
			}
			n.spare = append(n.spare, ns)
			n.mu.Unlock()
		}
	}()
}

// make makes a namespace on a free slot.
func (n *Network) make() (*Namespace, error) {
	n.mu.Lock()
	if len(n.free) == 0 {
		n.mu.Unlock()
		return nil, fmt.Errorf("network: all %d addresses of %s are in use", slots, n.Block())
	}
	slot := n.free[0]
	n.free = n.free[1:]
	n.mu.Unlock()
	ns := &Namespace{n: n, slot: slot, fd: -1, link: linkName(n.block, slot),
		Gateway: addrAt(n.block, slot, 1), Addr: addrAt(n.block, slot, 2)}
	if err := ns.wire(); err != nil {
		ns.Close()
		return nil, fmt.Errorf("network: %w", err)
	}
	return ns, nil
}

// wire makes the namespace and its veth: eth0 inside with the instance's
// address and a default route to the host's end.
func (ns *Namespace) wire() error {
	fd, err := ns.n.newNamespace()
	if err != nil {
		return err
	}
	ns.fd = fd
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ns.link}, PeerName: InstanceLink, PeerNamespace: netlink.NsFd(fd)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", ns.link, err)
	}
	hostEnd, err := netlink.LinkByName(ns.link)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(hostEnd, addr(ns.Gateway)); err != nil {
		return fmt.Errorf("address %s: %w", ns.link, err)
	}
	// No IPv6 from the instance: the rules are IPv4's, and the host's end
	// would otherwise answer on its link-local address.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+ns.link+"/disable_ipv6", []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(ns.n.ports) > 0 {
		// What comes in here may be sent on to the host's loopback (the
		// rules do so for the allowed ports only).
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+ns.link+"/route_localnet", []byte("1"), 0); err != nil {
			return err
		}
	}
	if err := netlink.LinkSetUp(hostEnd); err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	eth, err := h.LinkByName(InstanceLink)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(eth, addr(ns.Addr)); err != nil {
		return fmt.Errorf("address %s: %w", InstanceLink, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return err
	}
	gw := ns.Gateway.AsSlice()
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(gw)}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// newNamespace makes an empty network namespace and returns it open.
// It is the host's: the instance's own user namespace has no say over it
// (its root cannot change addresses, routes or rules).
func (n *Network) newNamespace() (netns.NsHandle, error) {
	type made struct {
		fd  netns.NsHandle
		err error
	}
	ch := make(chan made, 1)
	// On a thread of its own, which goes back to serve's namespace or
	// dies with the goroutine.
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- made{-1, fmt.Errorf("new network namespace: %w", err)}
			return
		}
		fd, err := netns.Get()
		if back := netns.Set(n.host); back != nil {
			if err == nil {
				fd.Close()
			}
			ch <- made{-1, back} // the thread stays locked and ends
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			fd = -1
		}
		ch <- made{fd, err}
	}()
	m := <-ch
	return m.fd, m.err
}

// Do runs f on a thread in the namespace: a process f starts is in it.
func (ns *Namespace) Do(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns.fd); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("network: enter %s: %w", ns.Addr, err)
			return
		}
		err := f()
		if back := netns.Set(ns.n.host); back != nil {
			// The thread stays locked and ends with the goroutine: a
			// process it started gets its parent-death signal.
			err = errors.Join(err, fmt.Errorf("network: back to serve's namespace: %w", back))
		} else {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

// Close removes the namespace's veth and what the host's connection
// tracking keeps of its connections, then lets its address go to another
// instance. The namespace itself ends with the last process in it.
func (ns *Namespace) Close() {
	gone := true
	if l, err := netlink.LinkByName(ns.link); err == nil {
		gone = netlink.LinkDel(l) == nil
	}
	if ns.fd >= 0 {
		ns.fd.Close()
		ns.fd = -1
	}
	// A flow of this instance that the host still tracks (a masqueraded
	// connection) must not reach the next instance at this address.
	var f netlink.ConntrackFilter
	if f.AddIP(netlink.ConntrackOrigSrcIP, net.IP(ns.Addr.AsSlice())) == nil {
		netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, &f)
	}
	if !gone {
		return // the address stays taken rather than clash with its veth
	}
	ns.n.mu.Lock()
	ns.n.free = append(ns.n.free, ns.slot)
	ns.n.mu.Unlock()
}

// rules sets up the block's table: instances reach nothing of the host
// (input; they answer what the host opened), not each other, not link-local addresses (a cloud's metadata
// service), and nobody reaches them unasked; what leaves the host is
// masqueraded.
func (n *Network) rules() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("network: nftables: %w", err)
	}
	if old, err := c.ListTableOfFamily(n.table.Name, n.table.Family); err == nil && old != nil {
		c.DelTable(old)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("network: remove the old table %s: %w", n.table.Name, err)
		}
	}
	t := c.AddTable(n.table)
	input := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	if len(n.ports) > 0 {
		pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
		loopback := netip.MustParsePrefix("127.0.0.1/32")
		for _, p := range n.ports {
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: rule(ifname(expr.MetaKeyIIFNAME, n.prefix, true),
				ipIn(16, netip.PrefixFrom(HostAddr, 32)), tcpPort(p), []expr.Any{
					&expr.Immediate{Register: 1, Data: loopback.Addr().AsSlice()},
					&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
				})})
			c.AddRule(&nftables.Rule{Table: t, Chain: input, Exprs: rule(ifname(expr.MetaKeyIIFNAME, n.prefix, true),
				ipIn(16, loopback), tcpPort(p), accept())})
		}
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: input, Exprs: rule(ifname(expr.MetaKeyIIFNAME, n.prefix, true), notReply(), drop())})
	forward := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: t, Chain: forward, Exprs: rule(
		ifname(expr.MetaKeyIIFNAME, n.prefix, true), ifname(expr.MetaKeyOIFNAME, LinkPrefix, true), drop())})
	linkLocal := netip.MustParsePrefix("169.254.0.0/16")
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		// A cloud's resolver may be link-local (GCE's is the metadata
		// server's address): DNS to it goes, nothing else.
		c.AddRule(&nftables.Rule{Table: t, Chain: forward, Exprs: rule(
			ifname(expr.MetaKeyIIFNAME, n.prefix, true), ipIn(16, linkLocal), port(proto, 53), accept())})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: forward, Exprs: rule(
		ifname(expr.MetaKeyIIFNAME, n.prefix, true), ipIn(16, linkLocal), drop())})
	c.AddRule(&nftables.Rule{Table: t, Chain: forward, Exprs: rule(
		ifname(expr.MetaKeyOIFNAME, n.prefix, true), notReply(), drop())})
	nat := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: rule(
		ipIn(12, n.Block()), ifname(expr.MetaKeyOIFNAME, LinkPrefix, false), []expr.Any{&expr.Masq{}})})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("network: nftables rules: %w", err)
	}
	return nil
}

func rule(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func drop() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}} }

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

// ifname matches an interface name that starts (or, with !starts, does
// not start) with prefix.
func ifname(key expr.MetaKey, prefix string, starts bool) []expr.Any {
	op := expr.CmpOpEq
	if !starts {
		op = expr.CmpOpNeq
	}
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: []byte(prefix)}}
}

// ipIn matches an IPv4 source (offset 12) or destination (16) in p.
func ipIn(offset uint32, p netip.Prefix) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	base := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: base[:]},
	}
}

// tcpPort matches TCP to port.
func tcpPort(p uint16) []expr.Any { return port(unix.IPPROTO_TCP, p) }

// port matches protocol proto (TCP or UDP) to port p.
func port(proto byte, p uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)},
	}
}

// notReply matches a packet of a connection the instance did not open.
func notReply() []expr.Any {
	// The kernel keeps the state in host order.
	mask := binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
	}
}

// linkName is the host-side veth of slot in block; slot -1 gives the
// block's prefix.
func linkName(block, slot int) string {
	if slot < 0 {
		return fmt.Sprintf("%s%02x", LinkPrefix, block)
	}
	return fmt.Sprintf("%s%02x%03x", LinkPrefix, block, slot)
}

// addrAt is address i (0-3) of slot's /30 in block.
func addrAt(block, slot, i int) netip.Addr {
	b := Subnet.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(block)<<(32-blockBits) | uint32(slot)<<(32-slotBits) | uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func addr(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(slotBits, 32)}}
}
