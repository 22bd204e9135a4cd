package memory_test

import (
	"context"
	"fmt"
	"time"

	"github.com/talkpad/talkpad/store"
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
			s := memory.New()
			ctx := context.Background()
			now := time.Now()
			batch := make([]store.Binding, size)
			for i := range batch {
				batch[i] = store.Binding{
					AOR: fmt.Sprintf("sip:bench%d@example.com", i), Contact: fmt.Sprintf("sip:bench%d@192.0.2.1:5060", i),
					Transport: "udp", CallID: "bench", Expires: now.Add(time.Hour), Q: 1000, Updated: now,
					Path: []string{"<sip:edge.example.com;lr>"},
				}
			}
			b.ReportAllocs()
			var v uint64
			for b.Loop() {
				v++
				for i := range batch {
					batch[i].Version = v
				}
				if err := s.UpsertBindings(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "bindings/s")
		})
	}
}
