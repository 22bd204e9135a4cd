package memory_test

import (
	"testing"

	"github.com/talkpad/talkpad/store/memory"
	"github.com/talkpad/talkpad/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Backend { return memory.New() })
}
