package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// serveStartTimeout bounds how long serve may take to listen.
	serveStartTimeout = 60 * time.Second
	// serveStopTimeout is how long serve may take to stop after SIGTERM
	// before its process group is killed.
	serveStopTimeout = 15 * time.Second
	// readyPrefix starts the line serve prints once it serves.
	readyPrefix = "shoal serving on "
)

// serve is a `shoal serve` the benchmark started as a child process, so
// that the benchmark's own CPU is the load generator's and the backend's.
type serve struct {
	// immutable
	url   string
	token string
	dir   string   // data, config and serve.log; removed by stop
	log   *os.File // serve's stdout and stderr; closed by stop
	cmd   *exec.Cmd

	exited chan struct{} // closed by the waiter goroutine once cmd.Wait returned
}

// startServe starts binary as `shoal serve` on a loopback port with a new
// data folder and waits until it serves. Its config folder is its own too,
// so it records no token in the user's credentials.
func startServe(ctx context.Context, binary string, backendPort int) (*serve, error) {
	dir, err := os.MkdirTemp("", "shoal-bench-")
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "serve.log")
	log, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(binary, "serve", "--listen", "127.0.0.1:0", "--data", data, "--shutdown-timeout", "5s",
		"--host-port", strconv.Itoa(backendPort))
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	// serve stops with the benchmark, however the benchmark ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	urls := make(chan string, 1)
	cmd.Stdout = &readyWatcher{urls: urls, log: log}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		log.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start shoal serve: %w", err)
	}
	s := &serve{dir: dir, log: log, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	fail := func(err error) (*serve, error) {
		s.stop()
		return nil, err
	}
	select {
	case s.url = <-urls:
	case <-s.exited:
		out, _ := os.ReadFile(logPath)
		return fail(fmt.Errorf("shoal serve exited before serving: %s", lastLines(out, 5)))
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(serveStartTimeout):
		return fail(fmt.Errorf("shoal serve not serving after %s", serveStartTimeout))
	}
	token, err := os.ReadFile(filepath.Join(data, "token"))
	if err != nil {
		return fail(fmt.Errorf("read serve's token: %w", err))
	}
	s.token = strings.TrimSpace(string(token))
	return s, nil
}

// stop stops serve with SIGTERM and waits; after serveStopTimeout it kills
// serve's process group. It removes serve's folder and reports whether
// serve stopped by itself.
func (s *serve) stop() bool {
	defer func() {
		s.log.Close()
		os.RemoveAll(s.dir)
	}()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return true
	case <-time.After(serveStopTimeout):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
		return false
	}
}

// readyWatcher copies serve's stdout to log and sends the URL of the line
// that says serve is serving. exec's copying goroutine calls Write.
type readyWatcher struct {
	urls chan<- string // readyWatcher -> startServe; buffered, sent at most once
	log  *os.File

	// owned by Write
	line []byte
	sent bool
}

func (w *readyWatcher) Write(p []byte) (int, error) {
	w.log.Write(p)
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			return len(p), nil
		}
		url, ok := strings.CutPrefix(string(w.line[:i]), readyPrefix)
		if ok && !w.sent {
			w.urls <- strings.TrimSpace(url)
			w.sent = true
		}
		w.line = w.line[i+1:]
	}
}

// lastLines returns the last n lines of b, on one line.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " | ")
}
