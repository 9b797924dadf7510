package e2e

import (
	"os"
	"testing"

	"github.com/shoal-dev/shoal/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveBinary()
	os.Exit(code)
}
