package registrar

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/talkpad/talkpad/store"
)

// CredentialCache keeps credentials looked up from a slower store in
// memory, so that authentication keeps working while the store is down.
//
// A lookup younger than TTL is answered from memory. An older one asks the
// store; if the store fails (anything but store.ErrNotFound), the cached
// credential is used however old it is, so users who authenticated before
// an outage, or were preloaded, can still register during it. A user the
// store says is gone is dropped from the cache at once.
//
// It satisfies CredentialGetter and is safe for concurrent use.
type CredentialCache struct {
	src CredentialGetter
	ttl time.Duration
	max int

	mu sync.RWMutex
	m  map[credKey]cachedCred

	hits, misses, stale atomic.Uint64
}

type credKey struct{ realm, user string }

type cachedCred struct {
	c       store.Credential
	fetched time.Time
}

// CredentialLister lists the credentials of a realm; store.Credentials
// satisfies it.
type CredentialLister interface {
	ListCredentials(ctx context.Context, realm string) ([]store.Credential, error)
}

// NewCredentialCache caches src. ttl defaults to 30 seconds: the longest a
// password change or a disabled account takes to apply while the store is
// up. max bounds the entries (default 1,000,000); when full, new entries
// replace arbitrary old ones.
func NewCredentialCache(src CredentialGetter, ttl time.Duration, max int) *CredentialCache {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	if max <= 0 {
		max = 1_000_000
	}
	return &CredentialCache{src: src, ttl: ttl, max: max, m: make(map[credKey]cachedCred)}
}

// Preload fills the cache with every credential of realm, so that users
// can authenticate during a store outage even if they had not since the
// process started.
func (c *CredentialCache) Preload(ctx context.Context, l CredentialLister, realm string) (int, error) {
	cs, err := l.ListCredentials(ctx, realm)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	for _, cr := range cs {
		c.put(credKey{cr.Realm, cr.Username}, cachedCred{cr, now})
	}
	return len(cs), nil
}

// GetCredential implements CredentialGetter.
func (c *CredentialCache) GetCredential(ctx context.Context, realm, username string) (store.Credential, error) {
	k := credKey{realm, username}
	now := time.Now()
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if ok && now.Sub(e.fetched) < c.ttl {
		c.hits.Add(1)
		return e.c, nil
	}
	cr, err := c.src.GetCredential(ctx, realm, username)
	switch {
	case err == nil:
		c.misses.Add(1)
		c.put(k, cachedCred{cr, now})
		return cr, nil
	case errors.Is(err, store.ErrNotFound):
		c.mu.Lock()
		delete(c.m, k)
		c.mu.Unlock()
		return store.Credential{}, err
	case ok:
		// The store is failing: a stale answer beats locking everyone out.
		c.stale.Add(1)
		return e.c, nil
	default:
		return store.Credential{}, err
	}
}

func (c *CredentialCache) put(k credKey, e cachedCred) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = e
}

// CacheStats counts cache answers.
type CacheStats struct {
	Hits, Misses, Stale uint64
	Entries             int
}

// Stats returns the cache's counters.
func (c *CredentialCache) Stats() CacheStats {
	c.mu.RLock()
	n := len(c.m)
	c.mu.RUnlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(), Entries: n}
}
