package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/talkpad/talkpad/store"
)

// BenchmarkUpsert measures UpsertBindings with batches of size bindings of
// distinct AORs, each iteration a newer version of the same batch (what a
// registrar's write-back flush sends). It reports bindings/s besides the
// usual figures. Backends call it from their BenchmarkBindingsUpsert.
func BenchmarkUpsert(b *testing.B, s store.Bindings, size int) {
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
			batch[i].Version, batch[i].CSeq = v, uint32(v)
		}
		if err := s.UpsertBindings(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "bindings/s")
}
