package testutil

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// outsideServer answers every request with the address it came from.
const outsideServer = `require('http').createServer((req, res) => res.end(req.socket.remoteAddress)).listen(8080, '0.0.0.0')`

// OutsideHost makes a host beyond this one for outbound tests: a network
// namespace of the test's own, reached over a veth, with an HTTP server on
// port 8080 that answers with the caller's address. It returns the
// server's URL and the host's address on that link (where masqueraded
// traffic comes from). It skips the test where it cannot (not root, no
// ip). Everything is removed when the test ends.
func OutsideHost(t testing.TB) (url, hostAddr string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: no test namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command")
	}
	k := os.Getpid() % 250
	name := fmt.Sprintf("shoal-outside-%d", os.Getpid())
	link := fmt.Sprintf("sto%d", os.Getpid()%1000000)
	hostAddr = fmt.Sprintf("10.99.%d.1", k)
	inside := fmt.Sprintf("10.99.%d.2", k)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "netns", "del", name).Run() // a killed run's
	ip("netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", link).Run() })
	ip("addr", "add", hostAddr+"/30", "dev", link)
	ip("link", "set", link, "up")
	ip("-n", name, "addr", "add", inside+"/30", "dev", "eth0")
	ip("-n", name, "link", "set", "eth0", "up")
	ip("-n", name, "link", "set", "lo", "up")
	srv := exec.Command("ip", "netns", "exec", name, "node", "-e", outsideServer)
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
		srv.Wait()
	})
	url = "http://" + inside + ":8080/"
	Eventually(t, 10*time.Second, "the outside host serves", func() bool {
		r, err := http.Get(url)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	return url, hostAddr
}
