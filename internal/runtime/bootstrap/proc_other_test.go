//go:build !linux

package bootstrap

import "os/exec"

// killWithParent does nothing where there is no parent-death signal; node is
// killed by Cleanup only.
func killWithParent(*exec.Cmd) {}
