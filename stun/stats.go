package stun

import "sync/atomic"

// Stats is a snapshot of the server's counters since New. All counts are
// cumulative except Conns.
type Stats struct {
	// Requests counts well-formed Binding requests, answered or not.
	Requests uint64
	// Classic counts the subset of Requests from RFC 3489 clients (no
	// magic cookie), answered with MAPPED-ADDRESS.
	Classic uint64
	// Indications counts Binding indications (keep-alives), which are
	// never answered.
	Indications uint64
	// Success counts success responses sent.
	Success uint64
	// Errors counts error responses sent, by code.
	Errors ErrorStats
	// Dropped counts input that got no answer, by reason.
	Dropped DropStats
	// Accepted counts TCP and TLS connections accepted; Conns is how many
	// are open now.
	Accepted uint64
	Conns    int64
}

// ErrorStats counts error responses by code.
type ErrorStats struct {
	BadRequest       uint64 // 400: malformed CHANGE-REQUEST or RESPONSE-PORT, or one that cannot be honoured on TCP
	UnknownAttribute uint64 // 420: unknown comprehension-required attribute, or CHANGE-REQUEST without RFC 5780
}

// DropStats counts input that was dropped without an answer, by reason.
type DropStats struct {
	NotSTUN        uint64 // not a STUN message at all (or broken TCP framing)
	Malformed      uint64 // STUN header, but attributes that do not add up
	BadFingerprint uint64 // FINGERPRINT wrong or not last
	NotRequest     uint64 // a response or error response: we sent no request
	Method         uint64 // a request for a method other than Binding
	RateLimited    uint64 // source over Config.RateLimit
	WriteFailed    uint64 // the response could not be sent
	TooManyConns   uint64 // TCP/TLS connections refused over Config.MaxConns
}

// counters are updated with atomics from every reader goroutine. They are
// padded apart in two groups (the per-request ones and the rest) so that
// the hot counters do not share a cache line with rarely written ones.
type counters struct {
	requests    atomic.Uint64
	success     atomic.Uint64
	_           [48]byte
	classic     atomic.Uint64
	indications atomic.Uint64
	badRequest  atomic.Uint64
	unknownAttr atomic.Uint64
	dropped     [dropWriteFailed + 1]atomic.Uint64
	tooMany     atomic.Uint64
	accepted    atomic.Uint64
	conns       atomic.Int64
}

func (c *counters) drop(r dropReason) { c.dropped[r].Add(1) }

// Stats returns a snapshot of the server's counters. Safe for concurrent
// use; it never blocks.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:    c.requests.Load(),
		Classic:     c.classic.Load(),
		Indications: c.indications.Load(),
		Success:     c.success.Load(),
		Errors: ErrorStats{
			BadRequest:       c.badRequest.Load(),
			UnknownAttribute: c.unknownAttr.Load(),
		},
		Dropped: DropStats{
			NotSTUN:        c.dropped[dropNotSTUN].Load(),
			Malformed:      c.dropped[dropMalformed].Load(),
			BadFingerprint: c.dropped[dropFingerprint].Load(),
			NotRequest:     c.dropped[dropNotRequest].Load(),
			Method:         c.dropped[dropMethod].Load(),
			RateLimited:    c.dropped[dropRateLimited].Load(),
			WriteFailed:    c.dropped[dropWriteFailed].Load(),
			TooManyConns:   c.tooMany.Load(),
		},
		Accepted: c.accepted.Load(),
		Conns:    c.conns.Load(),
	}
}
