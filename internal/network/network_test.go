package network

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// newNetwork sets up a real block on this host, or skips where serve
// could not (not root).
func newNetwork(t *testing.T, spare int, hostPorts ...uint16) *Network {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: no instance networks here")
	}
	// The real lock folder: a serve of another test holds its block there.
	n, err := New(spare, hostPorts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// run runs a command in ns and returns its output.
func run(t *testing.T, ns *Namespace, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := ns.Do(cmd.Start); err != nil {
		return "", err
	}
	err := cmd.Wait()
	return out.String(), err
}

func TestAddresses(t *testing.T) {
	for _, tt := range []struct {
		block, slot, i int
		want           string
	}{{0, 0, 1, "10.87.0.1"}, {0, 0, 2, "10.87.0.2"}, {0, 1, 2, "10.87.0.6"}, {0, 64, 1, "10.87.1.1"}, {1, 0, 2, "10.87.16.2"}, {15, 1023, 2, "10.87.255.254"}} {
		if got := addrAt(tt.block, tt.slot, tt.i).String(); got != tt.want {
			t.Errorf("addrAt(%d, %d, %d) = %s, want %s", tt.block, tt.slot, tt.i, got, tt.want)
		}
	}
	if got := linkName(10, 5); got != "shl0a005" || len(got) > 15 {
		t.Errorf("linkName(10, 5) = %q, want shl0a005 (at most 15 bytes)", got)
	}
}

// A namespace has lo and eth0 up with its address and a default route to
// the host's end, which the host has; Close takes the veth away.
func TestNamespace_Wired(t *testing.T) {
	n := newNetwork(t, 0)
	ns, err := n.Take()
	if err != nil {
		t.Fatal(err)
	}
	if !n.Block().Contains(ns.Addr) || !n.Block().Contains(ns.Gateway) || ns.Addr == ns.Gateway {
		t.Fatalf("addresses %s via %s, want two of %s", ns.Addr, ns.Gateway, n.Block())
	}
	out, err := run(t, ns, "ip", "-o", "addr")
	if err != nil {
		t.Fatalf("ip addr: %v: %s", err, out)
	}
	if !strings.Contains(out, "lo    inet 127.0.0.1/8") || !strings.Contains(out, InstanceLink+"    inet "+ns.Addr.String()+"/30") {
		t.Errorf("inside, ip addr says:\n%s\nwant lo and %s %s/30", out, InstanceLink, ns.Addr)
	}
	out, _ = run(t, ns, "ip", "route")
	if !strings.Contains(out, "default via "+ns.Gateway.String()+" dev "+InstanceLink) {
		t.Errorf("inside, ip route says:\n%s\nwant a default route via %s", out, ns.Gateway)
	}
	host, err := netlink.LinkByName(ns.link)
	if err != nil {
		t.Fatalf("the host's end %s: %v", ns.link, err)
	}
	if host.Attrs().OperState != netlink.OperUp && host.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("the host's end is down: %+v", host.Attrs())
	}
	// A process inside reaches the host's end but, with the host's input
	// dropped, gets nothing back.
	port := testutil.Listen(t, "0.0.0.0:0", "host\n")
	for _, target := range []string{ns.Gateway.String(), "127.0.0.1", HostAddr.String()} {
		if out, ok := dial(t, ns, target, port); ok {
			t.Errorf("inside, a connection to the host's %s:%d worked: %q", target, port, out)
		}
	}
	// Nor over IPv6: the host's end has no address, not even the
	// link-local one its MAC would give it, and drops what comes.
	if addrs, _ := netlink.AddrList(host, netlink.FAMILY_V6); len(addrs) > 0 {
		t.Errorf("the host's end has IPv6 addresses: %v", addrs)
	}
	v6 := testutil.Listen(t, "[::]:0", "host\n")
	mac := host.Attrs().HardwareAddr
	ll := fmt.Sprintf("fe80::%02x%02x:%02xff:fe%02x:%02x%02x", mac[0]^2, mac[1], mac[2], mac[3], mac[4], mac[5])
	out, err = run(t, ns, "node", "-e", `const s = require('net').connect({ host: process.argv[1], port: +process.argv[2] });
		s.setTimeout(2000, () => process.exit(3)); s.on('data', (d) => { console.log(String(d)); process.exit(0); }); s.on('error', (e) => { console.log(e.code); process.exit(2); });`,
		ll+"%"+InstanceLink, strconv.Itoa(v6))
	if err == nil || strings.Contains(out, "host") {
		t.Errorf("inside, a connection to the host's [%s]:%d worked: %q", ll, v6, out)
	}
	t.Logf("IPv6 to the host's end: %v %q", err, out)
	ns.Close()
	if _, err := netlink.LinkByName(ns.link); err == nil {
		t.Errorf("%s is still there after Close", ns.link)
	}
}

// Namespaces made ahead are taken first, and the pool fills again.
func TestNetwork_Spare(t *testing.T) {
	n := newNetwork(t, 2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n.mu.Lock()
		spare := len(n.spare)
		n.mu.Unlock()
		if spare == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spare namespaces after 10 s, want 2", spare)
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	ns, err := n.Take()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a spare namespace taken in %v", time.Since(start))
	defer ns.Close()
	if _, err := netlink.LinkByName(ns.link); err != nil {
		t.Errorf("the spare's veth: %v", err)
	}
}

// Two serves take two blocks; a block's lock keeps the second off it.
func TestNetwork_BlocksApart(t *testing.T) {
	a := newNetwork(t, 0)
	b, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Block() == b.Block() || a.Block().Overlaps(b.Block()) {
		t.Errorf("blocks %s and %s, want two apart", a.Block(), b.Block())
	}
	if !netip.MustParsePrefix("10.87.0.0/16").Contains(b.Block().Addr()) {
		t.Errorf("block %s outside %s", b.Block(), Subnet)
	}
}

// dial connects to host:port from inside ns (2 s at most) and reports
// whether the host's listener answered.
func dial(t *testing.T, ns *Namespace, host string, port int) (string, bool) {
	t.Helper()
	out, err := run(t, ns, "timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+strconv.Itoa(port)+" && head -1 <&3")
	return out, err == nil && strings.Contains(out, "host")
}

// An allowed port of the host's loopback is reached at HostAddr, and only
// that port, only there.
func TestNetwork_HostPorts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root")
	}
	allowed := testutil.Listen(t, "127.0.0.1:0", "host\n")
	other := testutil.Listen(t, "127.0.0.1:0", "host\n")
	n := newNetwork(t, 0, uint16(allowed))
	ns, err := n.Take()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if out, ok := dial(t, ns, HostAddr.String(), allowed); !ok {
		t.Errorf("inside, %s:%d (allowed) did not answer: %q", HostAddr, allowed, out)
	}
	for _, c := range []struct {
		host string
		port int
	}{{HostAddr.String(), other}, {ns.Gateway.String(), allowed}, {"127.0.0.1", allowed}} {
		if out, ok := dial(t, ns, c.host, c.port); ok {
			t.Errorf("inside, %s:%d answered: %q", c.host, c.port, out)
		}
	}
}
