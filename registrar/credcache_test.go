package registrar

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

type flakyCreds struct {
	*memory.Store
	fail  atomic.Bool
	calls atomic.Int64
}

func (f *flakyCreds) GetCredential(ctx context.Context, realm, user string) (store.Credential, error) {
	f.calls.Add(1)
	if f.fail.Load() {
		return store.Credential{}, errDown
	}
	return f.Store.GetCredential(ctx, realm, user)
}

func TestCredentialCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		src := &flakyCreds{Store: memory.New()}
		src.CreateCredential(ctx, store.NewCredential("alice", "r", "one"))
		src.CreateCredential(ctx, store.NewCredential("bob", "r", "two"))
		c := NewCredentialCache(src, 30*time.Second, 0)

		if _, err := c.GetCredential(ctx, "r", "alice"); err != nil {
			t.Fatal(err)
		}
		c.GetCredential(ctx, "r", "alice")
		if src.calls.Load() != 1 {
			t.Fatalf("fresh entry not served from memory: %d store calls", src.calls.Load())
		}
		// A password change applies after the TTL.
		src.UpdateCredential(ctx, "r", "alice", store.SetPassword("new"))
		time.Sleep(30 * time.Second)
		got, _ := c.GetCredential(ctx, "r", "alice")
		if got.HA1MD5 != store.HA1("MD5", "alice", "r", "new") {
			t.Fatal("password change not seen after the TTL")
		}
		// The store goes down: the stale entry still answers; an unknown
		// user gets the store's error.
		src.fail.Store(true)
		time.Sleep(time.Hour)
		if _, err := c.GetCredential(ctx, "r", "alice"); err != nil {
			t.Fatalf("stale entry not used during an outage: %v", err)
		}
		if _, err := c.GetCredential(ctx, "r", "bob"); !errors.Is(err, errDown) {
			t.Fatalf("uncached user during outage: %v", err)
		}
		// Preload covers users who have not authenticated yet.
		src.fail.Store(false)
		if n, err := c.Preload(ctx, src, "r"); err != nil || n != 2 {
			t.Fatalf("Preload = %d, %v", n, err)
		}
		src.fail.Store(true)
		time.Sleep(time.Hour)
		if _, err := c.GetCredential(ctx, "r", "bob"); err != nil {
			t.Fatalf("preloaded user during outage: %v", err)
		}
		// A deleted user is dropped at once when the store says so.
		src.fail.Store(false)
		src.DeleteCredential(ctx, "r", "bob")
		if _, err := c.GetCredential(ctx, "r", "bob"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted user: %v", err)
		}
		if s := c.Stats(); s.Stale != 2 || s.Entries != 1 {
			t.Errorf("stats = %+v", s)
		}
	})
}
