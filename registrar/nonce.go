package registrar

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"math/rand/v2"
	"sync"
	"time"
)

// Nonces are stateless: a nonce is the instant it was issued, a random
// salt, and an HMAC of both and the realm under the server's secret, so any
// node holding the secret can check it without having kept it, and nobody
// without the secret can mint one. The salt keeps two nonces issued in the
// same clock tick apart (their nonce-counts are tracked separately). Layout,
// base64url without padding (40 characters):
//
//	8 bytes  issue time, Unix nanoseconds, big endian
//	8 bytes  random salt
//	14 bytes HMAC-SHA256(secret, time || salt || realm), truncated
const (
	nonceTimeLen = 8 + 8 // time and salt: the signed part
	nonceMACLen  = 14
	nonceRawLen  = nonceTimeLen + nonceMACLen
	nonceLen     = (nonceRawLen*8 + 5) / 6
)

type nonceMaker struct {
	secret []byte
	realm  string
	macs   sync.Pool // hash.Hash: HMAC-SHA256 keyed with secret
}

func (m *nonceMaker) sum(dst []byte, signed []byte) []byte {
	h, _ := m.macs.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, m.secret)
	}
	h.Reset()
	h.Write(signed)
	h.Write([]byte(m.realm))
	var mac [sha256.Size]byte
	dst = append(dst, h.Sum(mac[:0])[:nonceMACLen]...)
	m.macs.Put(h)
	return dst
}

// make returns a nonce issued at now.
func (m *nonceMaker) make(now time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:], uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(raw[8:], rand.Uint64())
	m.sum(raw[:nonceTimeLen], raw[:nonceTimeLen])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// check reports whether nonce was issued by this server and when.
func (m *nonceMaker) check(nonce string) (issued time.Time, ok bool) {
	if len(nonce) != nonceLen {
		return time.Time{}, false
	}
	var raw [nonceRawLen]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce))
	if err != nil || n != nonceRawLen {
		return time.Time{}, false
	}
	ts := binary.BigEndian.Uint64(raw[:8])
	var want [nonceRawLen]byte
	if !hmac.Equal(m.sum(want[:0], raw[:nonceTimeLen]), raw[nonceTimeLen:]) {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ts)), true
}

// ncTracker remembers, per nonce, which nonce-counts have been used, so that
// a captured Authorization cannot be replayed. It keeps a 64-wide window
// below the highest count seen: a count seen before, or older than the
// window, is refused; counts arriving out of order inside the window (two
// requests sent at once with one nonce) are accepted once each.
type ncTracker struct {
	shards [64]ncShard
}

type ncShard struct {
	mu      sync.Mutex
	m       map[string]*ncState
	inserts int
}

type ncState struct {
	max     uint32
	seen    uint64 // bit i: count max-i was used
	expires time.Time
}

func (t *ncTracker) shard(nonce string) *ncShard {
	return &t.shards[fnv32(nonce)%uint32(len(t.shards))]
}

// use records nonce-count nc for nonce and reports whether it was fresh.
// expires is when the nonce stops being accepted; the record is forgotten
// after it.
func (t *ncTracker) use(nonce string, nc uint32, now, expires time.Time) bool {
	if nc == 0 {
		return false
	}
	s := t.shard(nonce)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*ncState)
	}
	st := s.m[nonce]
	if st == nil {
		s.inserts++
		if s.inserts%256 == 0 {
			for k, v := range s.m {
				if !now.Before(v.expires) {
					delete(s.m, k)
				}
			}
		}
		s.m[nonce] = &ncState{max: nc, seen: 1, expires: expires}
		return true
	}
	switch {
	case nc > st.max:
		shift := nc - st.max
		if shift >= 64 {
			st.seen = 0
		} else {
			st.seen <<= shift
		}
		st.seen |= 1
		st.max = nc
		return true
	case st.max-nc >= 64:
		return false
	default:
		bit := uint64(1) << (st.max - nc)
		if st.seen&bit != 0 {
			return false
		}
		st.seen |= bit
		return true
	}
}

// len returns the number of nonces tracked, for tests and stats.
func (t *ncTracker) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
