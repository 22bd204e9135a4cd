package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/talkpad/talkpad/store"
)

// UpsertBindings implements store.Bindings. A small batch runs as a
// pipeline of single-row statements in one transaction; from bulkThreshold
// rows on, as one statement over arrays. Either way it is one round trip
// and atomic. Rows are written in key order so that two transactions
// touching the same bindings lock them in the same order and cannot
// deadlock.
func (s *Store) UpsertBindings(ctx context.Context, bs []store.Binding) error {
	if len(bs) == 0 {
		return ctx.Err()
	}
	for _, b := range bs {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("postgres: upsert bindings: %w", err)
		}
	}
	rows := make([]row, len(bs))
	for i := range bs {
		rows[i] = row{bs[i].ID(), &bs[i]}
	}
	// Stable: of two writes of one key with equal versions, the later in
	// the batch still wins.
	slices.SortStableFunc(rows, func(x, y row) int {
		if c := strings.Compare(x.id.AOR, y.id.AOR); c != 0 {
			return c
		}
		return strings.Compare(x.id.Key, y.id.Key)
	})
	if len(rows) >= bulkThreshold {
		return s.upsertBulk(ctx, rows, len(bs))
	}
	batch := &pgx.Batch{}
	for _, r := range rows {
		b := r.b
		path := b.Path
		if path == nil {
			path = []string{}
		}
		batch.Queue(s.q.upsertBinding,
			b.AOR, r.id.Key, b.Contact, addrPortText(b.Received), b.Transport, addrPortText(b.LocalAddr),
			path, b.CallID, int64(b.CSeq), store.TruncateTime(b.Expires), int16(b.Q),
			b.UserAgent, b.Instance, int64(b.RegID), b.NATType, b.Node,
			strconv.FormatUint(b.Version, 10), store.TruncateTime(b.Updated))
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: upsert %d bindings: %w", len(bs), err)
	}
	return nil
}

// bulkThreshold is the batch size from which one unnest statement beats a
// pipeline of single-row statements.
const bulkThreshold = 16

type row struct {
	id store.BindingKey
	b  *store.Binding
}

// upsertBulk writes rows (sorted by key) in one statement. A statement
// cannot update one row twice, so of several writes of one key only the
// one that would win survives: the highest version, the last of equals.
func (s *Store) upsertBulk(ctx context.Context, rows []row, n int) error {
	dedup := rows[:0:0]
	for _, r := range rows {
		if k := len(dedup) - 1; k >= 0 && dedup[k].id == r.id {
			if r.b.Version >= dedup[k].b.Version {
				dedup[k] = r
			}
			continue
		}
		dedup = append(dedup, r)
	}
	m := len(dedup)
	var (
		aors, keys, contacts, received, transports, locals, paths, callIDs = make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m)
		uas, instances, natTypes, nodes, versions                          = make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m)
		cseqs, regIDs                                                      = make([]int64, m), make([]int64, m)
		qs                                                                 = make([]int16, m)
		expires, updated                                                   = make([]time.Time, m), make([]time.Time, m)
	)
	for i, r := range dedup {
		b := r.b
		p := b.Path
		if p == nil {
			p = []string{}
		}
		pj, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("postgres: upsert %d bindings: encode path: %w", n, err)
		}
		aors[i], keys[i], contacts[i] = b.AOR, r.id.Key, b.Contact
		received[i], transports[i], locals[i] = addrPortText(b.Received), b.Transport, addrPortText(b.LocalAddr)
		paths[i], callIDs[i], cseqs[i] = string(pj), b.CallID, int64(b.CSeq)
		expires[i], qs[i], uas[i] = store.TruncateTime(b.Expires), int16(b.Q), b.UserAgent
		instances[i], regIDs[i], natTypes[i], nodes[i] = b.Instance, int64(b.RegID), b.NATType, b.Node
		versions[i], updated[i] = strconv.FormatUint(b.Version, 10), store.TruncateTime(b.Updated)
	}
	_, err := s.pool.Exec(ctx, s.q.upsertBindingsBulk, aors, keys, contacts, received, transports, locals,
		paths, callIDs, cseqs, expires, qs, uas, instances, regIDs, natTypes, nodes, versions, updated)
	if err != nil {
		return fmt.Errorf("postgres: upsert %d bindings: %w", n, err)
	}
	return nil
}

// DeleteBindings implements store.Bindings.
func (s *Store) DeleteBindings(ctx context.Context, ids []store.BindingKey) error {
	if len(ids) == 0 {
		return ctx.Err()
	}
	aors := make([]string, len(ids))
	ks := make([]string, len(ids))
	for i, id := range ids {
		aors[i], ks[i] = id.AOR, id.Key
	}
	if _, err := s.pool.Exec(ctx, s.q.deleteBindings, aors, ks); err != nil {
		return fmt.Errorf("postgres: delete %d bindings: %w", len(ids), err)
	}
	return nil
}

// ListBindings implements store.Bindings.
func (s *Store) ListBindings(ctx context.Context, aor string, now time.Time) ([]store.Binding, error) {
	rows, err := s.pool.Query(ctx, s.q.listBindings, aor, now)
	if err != nil {
		return nil, fmt.Errorf("postgres: list bindings of %q: %w", aor, err)
	}
	out, err := collectBindings(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: list bindings of %q: %w", aor, err)
	}
	return out, nil
}

// ListAllBindings implements store.Bindings.
func (s *Store) ListAllBindings(ctx context.Context, now time.Time) ([]store.Binding, error) {
	rows, err := s.pool.Query(ctx, s.q.listAllBindings, now)
	if err != nil {
		return nil, fmt.Errorf("postgres: list all bindings: %w", err)
	}
	out, err := collectBindings(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: list all bindings: %w", err)
	}
	return out, nil
}

// DeleteExpiredBindings implements store.Bindings.
func (s *Store) DeleteExpiredBindings(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, s.q.deleteExpired, now)
	if err != nil {
		return 0, fmt.Errorf("postgres: delete expired bindings: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

func collectBindings(rows pgx.Rows) ([]store.Binding, error) {
	defer rows.Close()
	var out []store.Binding
	for rows.Next() {
		var (
			b                    store.Binding
			received, local, ver string
			cseq, regID          int64
			q                    int16
		)
		if err := rows.Scan(&b.AOR, &b.Contact, &received, &b.Transport, &local, &b.Path, &b.CallID, &cseq,
			&b.Expires, &q, &b.UserAgent, &b.Instance, &regID, &b.NATType, &b.Node, &ver, &b.Updated); err != nil {
			return nil, err
		}
		var err error
		if b.Received, err = parseAddrPort(received); err != nil {
			return nil, fmt.Errorf("binding %q: received: %w", b.AOR, err)
		}
		if b.LocalAddr, err = parseAddrPort(local); err != nil {
			return nil, fmt.Errorf("binding %q: local address: %w", b.AOR, err)
		}
		if b.Version, err = strconv.ParseUint(ver, 10, 64); err != nil {
			return nil, fmt.Errorf("binding %q: version: %w", b.AOR, err)
		}
		b.CSeq, b.RegID, b.Q = uint32(cseq), uint32(regID), int(q)
		b.Expires, b.Updated = b.Expires.UTC(), b.Updated.UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

// addrPortText stores a zero AddrPort (unknown) as "".
func addrPortText(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func parseAddrPort(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	return netip.ParseAddrPort(s)
}
