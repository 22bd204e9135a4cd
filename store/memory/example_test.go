package memory_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

// Open the in-memory store, add a user and a binding, and look it up.
func Example() {
	ctx := context.Background()
	s := memory.New()

	_ = s.CreateCredential(ctx, store.NewCredential("alice", "example.com", "secret"))
	c, _ := s.GetCredential(ctx, "example.com", "alice")
	fmt.Println(c.HA1For("MD5") == store.HA1("MD5", "alice", "example.com", "secret"))

	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	_ = s.UpsertBindings(ctx, []store.Binding{{
		AOR:      "sip:alice@example.com",
		Contact:  "sip:alice@10.0.0.5:5060",
		Received: netip.MustParseAddrPort("203.0.113.9:41000"),
		Expires:  now.Add(time.Hour),
		Q:        1000,
		Version:  1,
		Updated:  now,
	}})
	bs, _ := s.ListBindings(ctx, "sip:alice@example.com", now)
	fmt.Println(bs[0].Contact, "reached at", bs[0].Received)
	bs, _ = s.ListBindings(ctx, "sip:alice@example.com", now.Add(time.Hour))
	fmt.Println(len(bs), "at the expiry instant")
	// Output:
	// true
	// sip:alice@10.0.0.5:5060 reached at 203.0.113.9:41000
	// 0 at the expiry instant
}
