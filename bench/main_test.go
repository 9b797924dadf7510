package bench

import (
	"os"
	"testing"

	"github.com/shoal-dev/shoal/internal/testutil"
)

// TestMain removes the shoal binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveBinary()
	os.Exit(code)
}
