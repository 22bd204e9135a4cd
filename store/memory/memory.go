// Package memory is the in-process store backend: the embedded default of
// talkpad, and what tests use.
//
// It implements every interface of package store with maps guarded by a
// mutex, so it is safe for concurrent use and needs no set-up. It keeps
// nothing on disk: a restart loses every credential, binding, account
// balance, reservation and CDR in it. Use it
// for a single node that can afford that (registrations come back within one
// registration interval, credentials are reloaded from a file), for tests, and
// as the model a new backend's behaviour is checked against; use
// store/postgres when state must survive a restart or be shared by nodes.
package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/talkpad/talkpad/store"
)

// Store is an in-memory implementation of the store interfaces. The zero
// value is not ready; use New.
type Store struct {
	// now stamps CreatedAt/UpdatedAt. It is time.Now, read through a field
	// so that the store stays free of hidden globals.
	now func() time.Time

	credMu sync.RWMutex
	creds  map[credKey]store.Credential

	bindMu   sync.RWMutex
	bindings map[string]map[string]store.Binding // AOR → key → binding

	bill billing // billing.go: accounts, ledger, tariffs, sessions, CDRs
}

type credKey struct{ realm, username string }

var (
	_ store.Credentials = (*Store)(nil)
	_ store.Bindings    = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{
		now:      time.Now,
		creds:    make(map[credKey]store.Credential),
		bindings: make(map[string]map[string]store.Binding),
	}
}

// CreateCredential implements store.Credentials.
func (s *Store) CreateCredential(ctx context.Context, c store.Credential) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("memory: create credential: %w", err)
	}
	k := credKey{c.Realm, c.Username}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	if _, ok := s.creds[k]; ok {
		return fmt.Errorf("memory: create credential %q@%q: %w", c.Username, c.Realm, store.ErrExists)
	}
	now := store.TruncateTime(s.now())
	c.CreatedAt, c.UpdatedAt = now, now
	s.creds[k] = c
	return nil
}

// GetCredential implements store.Credentials.
func (s *Store) GetCredential(ctx context.Context, realm, username string) (store.Credential, error) {
	if err := ctx.Err(); err != nil {
		return store.Credential{}, err
	}
	s.credMu.RLock()
	c, ok := s.creds[credKey{realm, username}]
	s.credMu.RUnlock()
	if !ok {
		return store.Credential{}, fmt.Errorf("memory: get credential %q@%q: %w", username, realm, store.ErrNotFound)
	}
	return c, nil
}

// UpdateCredential implements store.Credentials. The updater runs once,
// under the store's lock, so it must not call back into the store.
func (s *Store) UpdateCredential(ctx context.Context, realm, username string, update func(store.Credential) (store.Credential, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k := credKey{realm, username}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	old, ok := s.creds[k]
	if !ok {
		return fmt.Errorf("memory: update credential %q@%q: %w", username, realm, store.ErrNotFound)
	}
	c, err := update(old)
	if err != nil {
		return err
	}
	c.Realm, c.Username, c.CreatedAt = old.Realm, old.Username, old.CreatedAt
	if err := c.Validate(); err != nil {
		return fmt.Errorf("memory: update credential: %w", err)
	}
	c.UpdatedAt = store.TruncateTime(s.now())
	s.creds[k] = c
	return nil
}

// DeleteCredential implements store.Credentials.
func (s *Store) DeleteCredential(ctx context.Context, realm, username string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k := credKey{realm, username}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	if _, ok := s.creds[k]; !ok {
		return fmt.Errorf("memory: delete credential %q@%q: %w", username, realm, store.ErrNotFound)
	}
	delete(s.creds, k)
	return nil
}

// ListCredentials implements store.Credentials.
func (s *Store) ListCredentials(ctx context.Context, realm string) ([]store.Credential, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.credMu.RLock()
	out := make([]store.Credential, 0, len(s.creds))
	for k, c := range s.creds {
		if realm == "" || k.realm == realm {
			out = append(out, c)
		}
	}
	s.credMu.RUnlock()
	slices.SortFunc(out, func(a, b store.Credential) int {
		if c := strings.Compare(a.Realm, b.Realm); c != 0 {
			return c
		}
		return strings.Compare(a.Username, b.Username)
	})
	return out, nil
}

// UpsertBindings implements store.Bindings.
func (s *Store) UpsertBindings(ctx context.Context, bs []store.Binding) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, b := range bs {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("memory: upsert bindings: %w", err)
		}
	}
	s.bindMu.Lock()
	defer s.bindMu.Unlock()
	for _, b := range bs {
		b = b.Clone()
		b.Expires = store.TruncateTime(b.Expires)
		b.Updated = store.TruncateTime(b.Updated)
		m := s.bindings[b.AOR]
		if m == nil {
			m = make(map[string]store.Binding)
			s.bindings[b.AOR] = m
		}
		k := b.Key()
		if old, ok := m[k]; ok && old.Version > b.Version {
			continue
		}
		m[k] = b
	}
	return nil
}

// DeleteBindings implements store.Bindings.
func (s *Store) DeleteBindings(ctx context.Context, ids []store.BindingKey) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.bindMu.Lock()
	defer s.bindMu.Unlock()
	for _, id := range ids {
		if m := s.bindings[id.AOR]; m != nil {
			delete(m, id.Key)
			if len(m) == 0 {
				delete(s.bindings, id.AOR)
			}
		}
	}
	return nil
}

// ListBindings implements store.Bindings.
func (s *Store) ListBindings(ctx context.Context, aor string, now time.Time) ([]store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.bindMu.RLock()
	m := s.bindings[aor]
	out := make([]store.Binding, 0, len(m))
	for _, b := range m {
		if b.Live(now) {
			out = append(out, b.Clone())
		}
	}
	s.bindMu.RUnlock()
	store.SortBindings(out)
	return out, nil
}

// ListAllBindings implements store.Bindings.
func (s *Store) ListAllBindings(ctx context.Context, now time.Time) ([]store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.bindMu.RLock()
	var out []store.Binding
	for _, m := range s.bindings {
		for _, b := range m {
			if b.Live(now) {
				out = append(out, b.Clone())
			}
		}
	}
	s.bindMu.RUnlock()
	store.SortBindings(out)
	return out, nil
}

// DeleteExpiredBindings implements store.Bindings.
func (s *Store) DeleteExpiredBindings(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.bindMu.Lock()
	defer s.bindMu.Unlock()
	n := 0
	for aor, m := range s.bindings {
		for k, b := range m {
			if !b.Live(now) {
				delete(m, k)
				n++
			}
		}
		if len(m) == 0 {
			delete(s.bindings, aor)
		}
	}
	return n, nil
}
