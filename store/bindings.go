package store

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Binding is one registered contact of an address-of-record: a row of the
// location service (RFC 3261 §10), with what NAT traversal, Path (RFC 3327),
// SIP Outbound (RFC 5626) and replication between nodes need.
//
// A binding is identified by its AOR and its [Binding.Key]: the
// +sip.instance and reg-id when the client sent them (RFC 5626 §6), else the
// Contact URI.
type Binding struct {
	// AOR is the address-of-record, normalised by the registrar, e.g.
	// "sip:alice@example.com".
	AOR string
	// Contact is the Contact URI the client registered, as sent, without
	// header parameters such as expires or q.
	Contact string
	// Received is the source address and port the REGISTER came from: where
	// the user is reached behind NAT.
	Received netip.AddrPort
	// Transport is the transport the REGISTER came over, lowercase: "udp",
	// "tcp", "tls", "ws", "wss".
	Transport string
	// LocalAddr is the local socket the REGISTER arrived on, so requests to
	// the user leave from the same address (the NAT pinhole's other end).
	LocalAddr netip.AddrPort
	// Path is the Path header vector (RFC 3327) in order, each entry a
	// route URI with its angle brackets and parameters.
	Path []string
	// CallID and CSeq are those of the REGISTER that created or last
	// refreshed the binding (RFC 3261 §10.3 step 7).
	CallID string
	CSeq   uint32
	// Expires is the absolute instant the binding expires. It is live
	// strictly before that instant and gone at it. Backends keep times to
	// the microsecond, in UTC.
	Expires time.Time
	// Q is the contact's q-value in thousandths (q=0.5 is 500), 0 to 1000.
	// Integer, so that ordering is exact in every backend; the registrar
	// decides what a contact without q gets.
	Q int
	// UserAgent is the client's User-Agent header.
	UserAgent string
	// Instance is the +sip.instance Contact parameter (RFC 5626 §4.1)
	// without quotes, e.g. "<urn:uuid:...>"; RegID is its reg-id (0: none).
	Instance string
	RegID    uint32
	// NATType is the NAT type the client reported about itself (e.g.
	// "symmetric"); empty when it reported none.
	NATType string
	// Node names the registrar node that owns the binding (the one holding
	// its connection or NAT pinhole); replicas carry the owner's name.
	Node string
	// Version orders writes of the same binding: an upsert never replaces
	// a stored binding with a higher version. Registrars increase it on
	// every change.
	Version uint64
	// Updated is when the binding was created or last refreshed, used to
	// order bindings of equal q by recency.
	Updated time.Time
}

// BindingKey identifies one binding.
type BindingKey struct {
	AOR string
	Key string
}

// Key returns the binding's identity within its AOR: "instance;reg-id=N"
// when Instance is set (RFC 5626 §6: one flow per instance and reg-id, or
// one per instance without reg-id), else the Contact URI.
func (b Binding) Key() string {
	if b.Instance == "" {
		return b.Contact
	}
	if b.RegID == 0 {
		return b.Instance
	}
	return b.Instance + ";reg-id=" + strconv.FormatUint(uint64(b.RegID), 10)
}

// ID returns the binding's key within the whole location table.
func (b Binding) ID() BindingKey { return BindingKey{AOR: b.AOR, Key: b.Key()} }

// Live reports whether the binding has not expired at now.
func (b Binding) Live(now time.Time) bool { return now.Before(b.Expires) }

// Clone returns a copy of b that shares no memory with it.
func (b Binding) Clone() Binding {
	if b.Path != nil {
		b.Path = append([]string(nil), b.Path...)
	}
	return b
}

// Validate reports whether b can be stored.
func (b Binding) Validate() error {
	switch {
	case b.AOR == "" || !validText(b.AOR):
		return fmt.Errorf("%w: binding AOR must be non-empty UTF-8", ErrInvalid)
	case b.Contact == "" || !validText(b.Contact):
		return fmt.Errorf("%w: binding of %q: contact must be non-empty UTF-8", ErrInvalid, b.AOR)
	case b.Q < 0 || b.Q > 1000:
		return fmt.Errorf("%w: binding of %q: q %d outside 0..1000", ErrInvalid, b.AOR, b.Q)
	case b.Expires.IsZero():
		return fmt.Errorf("%w: binding of %q: no expiry", ErrInvalid, b.AOR)
	case strings.ContainsRune(b.Transport, ' '):
		return fmt.Errorf("%w: binding of %q: bad transport %q", ErrInvalid, b.AOR, b.Transport)
	}
	for _, s := range []string{b.CallID, b.UserAgent, b.Instance, b.NATType, b.Node, b.Transport} {
		if !validText(s) {
			return fmt.Errorf("%w: binding of %q: field is not UTF-8 or holds NUL", ErrInvalid, b.AOR)
		}
	}
	for _, p := range b.Path {
		if p == "" || !validText(p) {
			return fmt.Errorf("%w: binding of %q: empty, non-UTF-8 or NUL-holding Path entry", ErrInvalid, b.AOR)
		}
	}
	return nil
}

// Bindings is the location service's persistent table.
//
// Bindings whose Expires is not after now are expired: list methods never
// return them, whether or not DeleteExpiredBindings has removed them yet.
type Bindings interface {
	// UpsertBindings inserts or replaces each binding, keyed by its ID,
	// atomically: either all are written or none. A stored binding with a
	// higher Version than the incoming one is kept (the stale write is
	// skipped, not an error), so replicas and delayed flushes cannot undo a
	// newer registration. It returns ErrInvalid, writing nothing, if any
	// binding fails Validate.
	UpsertBindings(ctx context.Context, bs []Binding) error
	// DeleteBindings removes the bindings with the given IDs, atomically.
	// Missing bindings are ignored.
	DeleteBindings(ctx context.Context, ids []BindingKey) error
	// ListBindings returns the live bindings of aor, highest q first, then
	// most recently updated first.
	ListBindings(ctx context.Context, aor string, now time.Time) ([]Binding, error)
	// ListAllBindings returns every live binding, ordered by AOR and then as
	// ListBindings, for loading the location table at start-up.
	ListAllBindings(ctx context.Context, now time.Time) ([]Binding, error)
	// DeleteExpiredBindings removes every binding that has expired at now
	// and returns how many it removed.
	DeleteExpiredBindings(ctx context.Context, now time.Time) (int, error)
}

// TruncateTime returns t as backends keep it: in UTC, to the microsecond,
// without a monotonic clock reading.
func TruncateTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}

// SortBindings orders bindings as ListBindings and ListAllBindings return
// them: by AOR (byte order, as the C collation), then highest q first, then most recently updated first, then
// by key so the order is total.
func SortBindings(bs []Binding) {
	slices.SortFunc(bs, CompareBindings)
}

// CompareBindings is the ordering of SortBindings, for slices.SortFunc.
func CompareBindings(a, b Binding) int {
	if c := strings.Compare(a.AOR, b.AOR); c != 0 {
		return c
	}
	if a.Q != b.Q {
		if a.Q > b.Q {
			return -1
		}
		return 1
	}
	if c := b.Updated.Compare(a.Updated); c != 0 {
		return c
	}
	return strings.Compare(a.Key(), b.Key())
}
