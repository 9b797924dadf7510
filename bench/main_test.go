package bench

import (
	"testing"

	"github.com/shoal-dev/shoal/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
