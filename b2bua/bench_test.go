package b2bua

import (
	"context"
	"testing"
	"time"
)

// BenchmarkCall is one whole call over loopback UDP: INVITE through the
// B2BUA to a carrier, 180, 200, ACK, BYE relayed. It measures the B2BUA
// and sipgo's transactions on both legs together (the peers' share too).
func BenchmarkCall(b *testing.B) {
	c := carrier(b, 200, nil)
	h := newHarness(b, func() TargetPicker { return Targets{targetOf(c, "c1")} }, func(cfg *Config) { cfg.OnEvent = nil })
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, err := h.invite(b, "+4930123")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Bye(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}

func BenchmarkStripWebRTC(b *testing.B) {
	offer := []byte(bigOffer())
	b.ReportAllocs()
	b.SetBytes(int64(len(offer)))
	for b.Loop() {
		StripWebRTC(offer)
	}
}

func BenchmarkCheckSDP(b *testing.B) {
	offer := []byte(bigOffer())
	b.ReportAllocs()
	b.SetBytes(int64(len(offer)))
	for b.Loop() {
		if err := checkSDP(offer); err != nil {
			b.Fatal(err)
		}
	}
}
