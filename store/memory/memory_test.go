package memory_test

import (
	"fmt"

	"testing"

	"github.com/talkpad/talkpad/store/memory"
	"github.com/talkpad/talkpad/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Backend { return memory.New() })
}

func BenchmarkBindingsUpsert(b *testing.B) {
	for _, size := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			storetest.BenchmarkUpsert(b, memory.New(), size)
		})
	}
}
