package bootstrap

import (
	"os/exec"
	"syscall"
)

// killWithParent has the kernel kill node when the test binary dies.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
