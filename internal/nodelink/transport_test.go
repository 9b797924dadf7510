package nodelink

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/rawsock"
)

// transportServer is node's http server answering hello, on the unix
// socket argv[3] ("unix") or on the pipes at descriptors 3 (requests) and
// 4 (responses), joined as the bootstrap joins a lane's FIFOs ("pipe").
const transportServer = `
const http = require('node:http');
const net = require('node:net');
const server = http.createServer({ keepAliveTimeout: 600000 }, (req, res) => {
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end('hello, world\n');
});
if (process.argv[2] === 'unix') {
  server.listen(process.argv[3], () => console.log('ready'));
} else {
  // As the bootstrap's laneSocket: the requests pipe's socket, its writes
  // sent to the responses pipe.
  const wr = new net.Socket({ fd: 4, readable: false, writable: true });
  const lane = new net.Socket({ fd: 3, readable: true, writable: true });
  lane._writeGeneric = (writev, data, encoding, cb) => writev ? wr._writev(data, cb) : wr._write(data, encoding, cb);
  lane._final = (cb) => { wr.end(); cb(); };
  server.emit('connection', lane);
  console.log('ready');
}
`

// BenchmarkTransport sends node's http server a small GET and reads the
// answer, one at a time, over a unix socket (as the node link does) and
// over a pair of pipes, joined as the bootstrap joins a lane's FIFOs, with
// this process's CPU time per request (cpu-ns/op) and node's
// (node-cpu-ns/op, in 10 ms ticks: run 100000x or more). Both sides read
// and write with internal/rawsock on one P, as serve does. A pipe is
// cheaper for the kernel than a socket, and node reading a request from
// one does not wake the writer's network poller, which on a unix socket
// it does (EPOLLOUT: Go polls every socket for writing too): a measure
// for a node link over pipes.
func BenchmarkTransport(b *testing.B) {
	if _, err := exec.LookPath("node"); err != nil {
		b.Skip("node not found in PATH")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, transport := range []string{"unix", "pipe"} {
		b.Run(transport, func(b *testing.B) {
			dir := b.TempDir()
			script, sock := filepath.Join(dir, "server.js"), filepath.Join(dir, "node.sock")
			if err := os.WriteFile(script, []byte(transportServer), 0o644); err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command("node", script, transport, sock)
			cmd.Stderr = os.Stderr
			var r io.Reader
			var w io.Writer
			if transport == "pipe" {
				toNode, fromUs, err := os.Pipe()
				if err != nil {
					b.Fatal(err)
				}
				fromNode, toUs, err := os.Pipe()
				if err != nil {
					b.Fatal(err)
				}
				defer fromUs.Close()
				defer fromNode.Close()
				cmd.ExtraFiles = []*os.File{toNode, toUs}
				r, w = rawsock.Reader(fromNode), rawsock.Writer(fromUs)
				defer toNode.Close()
				defer toUs.Close()
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			if l, err := bufio.NewReader(out).ReadString('\n'); l != "ready\n" {
				b.Fatalf("node said %q, %v", l, err)
			}
			if transport == "unix" {
				c, err := net.Dial("unix", sock)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				r, w = rawsock.Reader(c), rawsock.Writer(c)
			}
			req := []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Shoal-Id: 0123456789abcdef\r\n\r\n")
			buf := make([]byte, 4<<10)
			// roundTrip sends req and reads the answer whole: a head and a
			// body of the Content-Length it gives.
			roundTrip := func() {
				if _, err := w.Write(req); err != nil {
					b.Fatal(err)
				}
				n := 0
				for want := -1; want < 0 || n < want; {
					k, err := r.Read(buf[n:])
					if err != nil {
						b.Fatal(err)
					}
					n += k
					if want < 0 {
						want = answerSize(buf[:n])
					}
				}
			}
			for range 1000 {
				roundTrip()
			}
			cpu0, node0 := selfCPU(), procCPU(b, cmd.Process.Pid)
			b.ResetTimer()
			for b.Loop() {
				roundTrip()
			}
			b.StopTimer()
			b.ReportMetric(float64(selfCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(procCPU(b, cmd.Process.Pid)-node0)/float64(b.N), "node-cpu-ns/op")
		})
	}
}

// answerSize is the length of the HTTP answer that p begins with, or -1
// while its head is not all in p.
func answerSize(p []byte) int {
	end := bytes.Index(p, []byte("\r\n\r\n"))
	if end < 0 {
		return -1
	}
	head := strings.ToLower(string(p[:end]))
	i := strings.Index(head, "content-length: ")
	if i < 0 {
		return end + 4
	}
	rest := head[i+len("content-length: "):]
	if j := strings.IndexByte(rest, '\r'); j >= 0 {
		rest = rest[:j]
	}
	n, _ := strconv.Atoi(rest)
	return end + 4 + n
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is process pid's user and system CPU time so far, in 10 ms
// ticks (USER_HZ).
func procCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command, which is in parentheses: utime and
	// stime are the 12th and 13th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
