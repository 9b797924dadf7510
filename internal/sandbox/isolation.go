package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/shoal-dev/shoal/internal/jail"
	"github.com/shoal-dev/shoal/internal/network"
	"github.com/shoal-dev/shoal/internal/runtime/bootstrap"
)

// Mode says how much isolation serve insists on.
type Mode string

const (
	// Auto applies what the host allows and warns about the rest.
	Auto Mode = "auto"
	// Strict refuses to start unless every piece applies.
	Strict Mode = "strict"
	// Off starts instances as plain child processes.
	Off Mode = "off"
)

// ParseMode checks a mode's name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, Strict, Off:
		return m, nil
	}
	return "", fmt.Errorf("isolation %q: want auto, strict or off", s)
}

// The pieces of isolation, by their stable names.
const (
	PieceCgroup     = "cgroup"
	PieceNamespaces = "namespaces"
	PieceFiles      = "filesystem"
	PieceUID        = "uid-per-project"
	PieceSeccomp    = "seccomp"
	PieceNetwork    = "network-namespace"
	PieceLandlock   = "landlock"
	PieceChecks     = "deploy-checks"
)

// Piece is one part of an instance's isolation and whether it applies.
type Piece struct {
	Name   string `json:"name"`
	On     bool   `json:"on"`
	Detail string `json:"detail"`
}

// Report is the isolation instances get on this host.
type Report struct {
	Mode   Mode    `json:"mode"`
	Pieces []Piece `json:"pieces"`
}

// Missing returns the pieces that do not apply.
func (r Report) Missing() []Piece {
	var out []Piece
	for _, p := range r.Pieces {
		if !p.On {
			out = append(out, p)
		}
	}
	return out
}

// Line is the report in one line, as serve prints it at start.
func (r Report) Line() string {
	var on, off []string
	for _, p := range r.Pieces {
		if p.On {
			on = append(on, p.Name)
		} else {
			off = append(off, p.Name)
		}
	}
	s := "isolation " + string(r.Mode) + ": "
	if len(on) == 0 {
		s += "none"
	} else {
		s += strings.Join(on, ", ")
	}
	if len(off) > 0 {
		s += "; missing: " + strings.Join(off, ", ")
	}
	return s
}

// ErrStrict is returned by New in strict mode when a piece is missing.
var ErrStrict = errors.New("isolation strict: pieces missing")

// probe works out what applies on this host: cgroups and namespaces are
// tried for real.
func (sb *Sandbox) probe() Report {
	r := Report{Mode: sb.cfg.Isolation}
	if r.Mode == Off || r.Mode == "" {
		r.Mode = Off
		for _, name := range []string{PieceCgroup, PieceNamespaces, PieceFiles, PieceUID, PieceSeccomp, PieceChecks, PieceLandlock, PieceNetwork} {
			r.Pieces = append(r.Pieces, Piece{Name: name, Detail: "isolation off"})
		}
		return r
	}
	fs, what, err := openCgroups()
	if err != nil {
		r.Pieces = append(r.Pieces, Piece{Name: PieceCgroup, Detail: err.Error()})
	} else {
		sb.cgroups = fs
		r.Pieces = append(r.Pieces, Piece{Name: PieceCgroup, On: true,
			Detail: fmt.Sprintf("%s: memory limit (the function's memory + %d MB, no swap), %d tasks, CPU weight by memory, OOM kills counted", what, SlackMB, PidsMax)})
	}
	jailed := []Piece{
		{Name: PieceNamespaces, Detail: "user, mount, pid, ipc, uts and cgroup namespaces"},
		{Name: PieceFiles, Detail: "the system and the deployment read-only, a private /tmp, a fresh /proc, no other host files"},
		{Name: PieceUID, Detail: "node runs as an unprivileged uid of its project's own"},
		{Name: PieceSeccomp, Detail: "no_new_privs and a seccomp filter (no ptrace, mounts, namespaces, bpf, io_uring, keys, modules)"},
		{Name: PieceChecks, Detail: "the deploy-time check that loads a bundle runs in an instance's sandbox"},
	}
	if err := sb.checkJail(); err != nil {
		for i := range jailed {
			jailed[i].Detail = err.Error()
		}
	} else {
		sb.jailed = true
		for i := range jailed {
			jailed[i].On = true
		}
	}
	r.Pieces = append(r.Pieces, jailed...)
	ll := Piece{Name: PieceLandlock, Detail: "needs the jail"}
	switch abi := jail.LandlockABI(); {
	case abi == 0:
		ll.Detail = "the kernel has no Landlock: the mount namespace alone limits the files node sees"
	case sb.jailed:
		ll.On, ll.Detail = true, fmt.Sprintf("Landlock ABI %d: the runtime and node reach only the system folders and their deployment (to read), /tmp, /proc and the scratch folder", abi)
	}
	r.Pieces = append(r.Pieces, ll, sb.probeNetwork())
	return r
}

// SpareNamespaces is how many network namespaces serve keeps made ahead.
const SpareNamespaces = 2

// probeNetwork sets up the host's side of the instances' network.
func (sb *Sandbox) probeNetwork() Piece {
	p := Piece{Name: PieceNetwork, Detail: "needs the jail: instances share the host's network, so they reach its loopback services (the control API behind its token, and anything else listening there)"}
	if !sb.jailed {
		return p
	}
	block := "a block of " + network.Subnet.String()
	if sb.cfg.Probe {
		if err := network.Check(); err != nil {
			p.Detail = err.Error() + "; instances would share the host's network"
			return p
		}
	} else {
		n, err := network.New(SpareNamespaces, sb.cfg.HostPorts...)
		if err != nil {
			p.Detail = err.Error() + "; instances share the host's network, so they reach its loopback services"
			return p
		}
		sb.net = n
		block = n.Block().String() + ", serve's block"
	}
	p.On, p.Detail = true, fmt.Sprintf("a network namespace each (%s), outbound traffic masqueraded (IPv4 forwarding on); the host, its loopback services, other instances and link-local addresses out of reach", block)
	if len(sb.cfg.HostPorts) > 0 {
		ports := make([]string, len(sb.cfg.HostPorts))
		for i, port := range sb.cfg.HostPorts {
			ports[i] = strconv.Itoa(int(port))
		}
		p.Detail += fmt.Sprintf(", but for the host's loopback port %s at %s", strings.Join(ports, ", "), network.HostAddr)
	}
	return p
}

// errNotRoot explains why the namespaces are off for a serve that is not
// root.
var errNotRoot = errors.New("serve is not root: instances need two uids mapped in their user namespace")

// CheckPassed is what the runtime's jail check prints once node ran in the
// jail as it should.
const CheckPassed = "jail check passed"

// checkJail starts a runtime in the jail that only checks it can run node
// there as the function's uid.
func (sb *Sandbox) checkJail() error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	work, err := os.MkdirTemp(sb.scratch.dir, "check-")
	if err != nil {
		return fmt.Errorf("jail check: %w", err)
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o755); err != nil {
		return fmt.Errorf("jail check: %w", err)
	}
	p, err := sb.start(Spec{ID: "check", Project: "shoal-check", WorkDir: work, Bundle: filepath.Join(work, "check.mjs"), MemoryMB: 128}, checkingJail)
	if err != nil {
		return fmt.Errorf("jail check: %w", err)
	}
	<-p.Done()
	out := strings.TrimSpace(p.checkOut.String())
	if p.Err() != nil {
		return fmt.Errorf("jail check: %v: %s", p.Err(), out)
	}
	if !strings.Contains(out, CheckPassed) {
		return fmt.Errorf("jail check: the runtime did not say %q: %q", CheckPassed, out)
	}
	return nil
}

// BundleCheckType marks the line a runtime prints for --check-bundle.
const BundleCheckType = "bundle-check"

// BundleCheck is what a runtime found loading a bundle: its config export
// and code cache (bootstrap.Checked), or why it cannot serve.
type BundleCheck struct {
	Type      string          `json:"type"`
	Config    json.RawMessage `json:"config,omitempty"`
	CodeCache []byte          `json:"codeCache,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// ChecksBundles reports whether CheckBundle runs bundles in the sandbox; if
// not, the caller loads them itself (bootstrap.Check).
func (sb *Sandbox) ChecksBundles() bool { return sb.jailed }

// CheckBundle loads s's bundle in an instance's sandbox, as bootstrap.Check
// does outside it: its top-level code runs jailed, in a cgroup, with s.Env,
// in a node with the flags of an instance of s.MemoryMB. It returns what it
// found, and a *bootstrap.CheckError when the bundle does not load or
// exports nothing that serves.
func (sb *Sandbox) CheckBundle(ctx context.Context, s Spec) (bootstrap.Checked, error) {
	p, err := sb.start(s, checkingBundle)
	if err != nil {
		return bootstrap.Checked{}, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.Done()
		return bootstrap.Checked{}, &bootstrap.CheckError{Msg: "loading the bundle did not finish in time"}
	}
	out := p.checkOut.Bytes()
	for _, line := range slices.Backward(bytes.Split(out, []byte("\n"))) {
		var c BundleCheck
		if json.Unmarshal(line, &c) != nil || c.Type != BundleCheckType {
			continue
		}
		if c.Error != "" {
			return bootstrap.Checked{}, &bootstrap.CheckError{Msg: c.Error}
		}
		return bootstrap.Checked{Config: c.Config, CodeCache: c.CodeCache}, nil
	}
	return bootstrap.Checked{}, fmt.Errorf("check bundle %s in the sandbox: %v: %s", s.Bundle, p.Err(), bytes.TrimSpace(out))
}
