package relay

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Flags tune how one offer or answer is handled; the zero value is the
// default behaviour. They mirror the rtpengine flags that SIP proxies send.
type Flags struct {
	// Learning overrides Config.Learning for the party sending this SDP.
	Learning Learning
	// KeepICE keeps the party's ICE attributes and candidates. By default
	// they are removed: once the relay's address replaces the party's, they
	// describe transports the other side cannot reach through the relay.
	KeepICE bool
	// ReplaceOrigin also writes the relay's address into the o= line.
	ReplaceOrigin bool
	// TransportProtocol replaces the m= transport of RTP streams (e.g.
	// "RTP/AVP"); empty keeps it.
	TransportProtocol string
	// Transcode lists codecs ("PCMU", "PCMA") to add to an offer for the
	// other party when the offer carries the other G.711 law, so that a
	// party supporting only one law can still be reached; the relay then
	// converts in both directions. Ignored on answers.
	Transcode []string
	// TrustAddress trusts the SDP's connection address instead of the
	// signalling source (rtpengine's trust-address): only the SDP address
	// may latch the party's legs.
	TrustAddress bool
	// MediaAddress overrides Config.AdvertiseAddr in this rewritten SDP.
	MediaAddress netip.Addr
}

// OfferRequest is an SDP offer from the party tagged FromTag.
type OfferRequest struct {
	CallID  string
	FromTag string
	// ToTag is empty for an initial INVITE and set for a re-INVITE.
	ToTag string
	SDP   []byte
	// SourceAddr is where the offer's signalling came from (the SIP
	// source). When valid, only packets from it or from the SDP's own
	// address may latch this party's legs (RTP Bleed protection).
	SourceAddr netip.Addr
	Flags      Flags
}

// AnswerRequest is the SDP answer of the party tagged ToTag to an offer from
// the party tagged FromTag.
type AnswerRequest struct {
	CallID     string
	FromTag    string
	ToTag      string
	SDP        []byte
	SourceAddr netip.Addr
	Flags      Flags
}

// DeleteRequest ends a session. FromTag and ToTag are optional; when set,
// they must name a party of the session.
type DeleteRequest struct {
	CallID  string
	FromTag string
	ToTag   string
}

// session is the relay state of one call: its parties' tags and streams.
type session struct {
	r       *Relay
	callID  string
	created time.Time

	mu         sync.Mutex // held while signalling changes the session
	tags       [2]string  // [0] made the first offer
	streams    []*stream
	lastSignal time.Time
	deleted    bool
}

// fill sets the session fields of ev; side names the party of a latch event.
func (s *session) fill(ev *Event, side int) {
	ev.CallID = s.callID
	// tags are written only under s.mu by signalling, but a string header
	// read racing a write would be a data race: copy under the lock. Latch
	// events are rare enough for that.
	s.mu.Lock()
	ev.FromTag, ev.ToTag = s.tags[0], s.tags[1]
	if side >= 0 {
		ev.Tag = s.tags[side]
	}
	s.mu.Unlock()
}

// Offer handles an SDP offer: it creates the session on the first offer of a
// call, allocates ports for new streams, re-arms latching of the offering
// party, and returns the offer rewritten to point the other party at the
// relay.
func (r *Relay) Offer(ctx context.Context, req OfferRequest) ([]byte, error) {
	if req.CallID == "" || req.FromTag == "" {
		return nil, fmt.Errorf("%w: offer needs call-id and from-tag", ErrBadRequest)
	}
	sd, media, err := parseSDP(req.SDP)
	if err != nil {
		return nil, err
	}
	for {
		s, created, err := r.session(req.CallID, req.FromTag, req.ToTag, true)
		if err != nil {
			return nil, err
		}
		out, err := s.signal(true, req.FromTag, req.ToTag, sd, media, req.SourceAddr, req.Flags, created)
		if err == errRetry {
			continue // the session was deleted meanwhile: this offer starts a new one
		}
		if err != nil && created {
			r.remove(s)
		}
		return out, err
	}
}

// Answer handles the SDP answer of the party tagged req.ToTag: it records
// that party, re-arms its latching and returns the answer rewritten to point
// the offerer at the relay.
func (r *Relay) Answer(ctx context.Context, req AnswerRequest) ([]byte, error) {
	if req.CallID == "" || req.FromTag == "" || req.ToTag == "" {
		return nil, fmt.Errorf("%w: answer needs call-id, from-tag and to-tag", ErrBadRequest)
	}
	sd, media, err := parseSDP(req.SDP)
	if err != nil {
		return nil, err
	}
	s, _, err := r.session(req.CallID, req.FromTag, req.ToTag, false)
	if err != nil {
		return nil, err
	}
	out, err := s.signal(false, req.ToTag, req.FromTag, sd, media, req.SourceAddr, req.Flags, false)
	if err == errRetry {
		err = fmt.Errorf("%w: %s", ErrNotFound, req.CallID)
	}
	return out, err
}

// Delete ends the sessions of req.CallID that know req.FromTag or
// req.ToTag (every session of the call when both are empty) and frees their
// ports.
func (r *Relay) Delete(ctx context.Context, req DeleteRequest) error {
	r.mu.Lock()
	var victims []*session
	for _, s := range r.sessions[req.CallID] {
		if (req.FromTag == "" && req.ToTag == "") || s.knows(req.FromTag, req.ToTag) {
			victims = append(victims, s)
		}
	}
	r.mu.Unlock()
	n := 0
	for _, s := range victims {
		if r.remove(s) {
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, req.CallID)
	}
	return nil
}

// knows reports whether one of the non-empty tags names a party of s.
func (s *session) knows(tags ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tags {
		if t != "" && (t == s.tags[0] || t == s.tags[1]) {
			return true
		}
	}
	return false
}

// errRetry tells Offer that the session it found was deleted before it could
// lock it.
var errRetry = fmt.Errorf("relay: retry")

// session finds the session of callID that knows tag or peerTag or, with
// create, starts a new one. Lock order: r.mu before s.mu.
func (r *Relay) session(callID, tag, peerTag string, create bool) (*session, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false, ErrServerClosed
	}
	for _, s := range r.sessions[callID] {
		if s.knows(tag, peerTag) {
			return s, false, nil
		}
	}
	if !create {
		return nil, false, fmt.Errorf("%w: %s", ErrNotFound, callID)
	}
	now := time.Now()
	s := &session{r: r, callID: callID, created: now, lastSignal: now}
	// Known by its tag from the start, so that a concurrent offer with the
	// same tag finds it instead of starting another.
	s.tags[0] = tag
	r.sessions[callID] = append(r.sessions[callID], s)
	return s, true, nil
}

// signal applies an offer (from party tag, to party peerTag) or an answer
// (from party tag, answering peerTag's offer) to the session.
func (s *session) signal(offer bool, tag, peerTag string, sd sdpDesc, media []mediaInfo, src netip.Addr, fl Flags, created bool) ([]byte, error) {
	r := s.r
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return nil, errRetry
	}
	side, err := s.sideOf(offer, tag, peerTag, created)
	if err != nil {
		return nil, err
	}
	other := 1 - side

	// Allocate every port this SDP needs before changing anything, so
	// that exhaustion leaves the session as it was.
	var got []*stream
	undo := func() {
		for _, st := range got {
			st.mu.Lock()
			pairs := [2]portPair{st.legs[0].pair, st.legs[1].pair}
			st.legs[0].pair, st.legs[1].pair = portPair{}, portPair{}
			st.mu.Unlock()
			r.pool.free(pairs[0])
			r.pool.free(pairs[1])
		}
	}
	for i := range media {
		if media[i].rejected {
			continue
		}
		if !offer && i >= len(s.streams) {
			media[i].rejected = true // an answer cannot add streams
			continue
		}
		var st *stream
		if i < len(s.streams) {
			// Existing stream; a stream first seen rejected has no
			// ports and no goroutines yet.
			if st = s.streams[i]; st.legs[0].pair.rtp != nil {
				continue
			}
		} else {
			st = &stream{sess: s, index: i, media: media[i].media}
		}
		got = append(got, st)
		for l := range 2 {
			p, err := r.pool.alloc()
			if err != nil {
				undo()
				return nil, err
			}
			st.mu.Lock()
			st.legs[l].pair = p
			st.mu.Unlock()
		}
	}
	for i := len(s.streams); i < len(media); i++ {
		st := &stream{sess: s, index: i, media: media[i].media, rejected: true}
		for _, g := range got {
			if g.index == i {
				st = g
			}
		}
		s.streams = append(s.streams, st)
	}
	for _, st := range got {
		st.start()
	}

	now := time.Now()
	s.lastSignal = now
	if src.IsValid() {
		src = src.Unmap()
	}
	rw := rewrite{
		addr:          r.cfg.AdvertiseAddr,
		ports:         make([]uint16, len(media)),
		removeICE:     !fl.KeepICE,
		replaceOrigin: fl.ReplaceOrigin,
		proto:         fl.TransportProtocol,
		addPT:         make([]uint8, len(media)),
		mapPT:         make([][2]uint8, len(media)),
	}
	if fl.MediaAddress.IsValid() {
		rw.addr = fl.MediaAddress.Unmap()
	}
	learning := fl.Learning
	if learning == LearnDefault {
		learning = r.cfg.Learning
	}
	for i := range media {
		mi := &media[i]
		st := s.streams[i]
		rw.addPT[i] = 255
		st.mu.Lock()
		if st.legs[0].pair.rtp == nil {
			mi.rejected = true
		}
		st.rejected = mi.rejected
		if mi.rejected {
			st.mu.Unlock()
			continue
		}
		st.media = mi.media
		st.legs[side].update(mi, src, fl.TrustAddress, learning)
		rw.ports[i] = st.legs[other].pair.port
		if offer {
			rw.addPT[i] = transcodePT(mi, fl.Transcode)
		} else {
			rw.mapPT[i] = answerPT(mi, &st.legs[other])
		}
		st.lastMedia = now
		st.mu.Unlock()
	}
	return rw.apply(sd, media)
}

// sideOf decides which party (0: first offerer, 1: the other) tag is.
func (s *session) sideOf(offer bool, tag, peerTag string, created bool) (int, error) {
	switch {
	case created:
		s.tags[0] = tag
		return 0, nil
	case tag == s.tags[0]:
		return 0, nil
	case tag == s.tags[1]:
		return 1, nil
	case s.tags[1] == "" && (peerTag == s.tags[0] || !offer):
		// The answerer (or a re-offer from the callee before we saw its
		// answer) introduces itself.
		s.tags[1] = tag
		return 1, nil
	case !offer && peerTag == s.tags[0]:
		// An answer from another fork (a 183 from one branch, then the 200
		// from another): the latest answerer becomes the other party. Its
		// SDP differs, so its legs re-arm as for a moved endpoint.
		s.tags[1] = tag
		return 1, nil
	}
	return 0, fmt.Errorf("%w: %q in call %s", ErrTagMismatch, tag, s.callID)
}

// update records a party's SDP for one stream on its leg and re-arms the
// leg's latching.
func (l *leg) update(mi *mediaInfo, src netip.Addr, trust bool, learning Learning) {
	if trust || !src.IsValid() {
		src = netip.Addr{}
		if trust {
			src = mi.addr
		}
	}
	rtpAddr := netip.AddrPortFrom(mi.addr, mi.port)
	moved := l.rtp.sdp != rtpAddr || l.srcIP != src
	l.rtp.sdp, l.rtcp.sdp = rtpAddr, mi.rtcp
	l.sdpIP = mi.addr
	if mi.addr.IsUnspecified() {
		l.sdpIP = netip.Addr{}
	}
	l.srcIP = src
	l.learning = learning
	l.rtcpMux = mi.rtcpMux
	l.hold = mi.hold()
	l.formats = mi.formats
	l.clock = [128]uint32{}
	for pt, c := range mi.clock {
		l.clock[pt&127] = c
	}
	l.rtp.rearm(moved)
	l.rtcp.rearm(moved)
}

// transcodePT picks the G.711 law to add to an offer, or 255.
func transcodePT(mi *mediaInfo, codecs []string) uint8 {
	if !mi.rtp {
		return 255
	}
	for _, c := range codecs {
		switch strings.ToUpper(c) {
		case "PCMA":
			if mi.formats.has(ptPCMU) && !mi.formats.has(ptPCMA) {
				return ptPCMA
			}
		case "PCMU":
			if mi.formats.has(ptPCMA) && !mi.formats.has(ptPCMU) {
				return ptPCMU
			}
		}
	}
	return 255
}

// answerPT finds a G.711 law in an answer that the offerer never offered
// (one the relay added for transcoding) and returns it with the law the
// offerer did offer.
func answerPT(mi *mediaInfo, offerer *leg) [2]uint8 {
	for _, p := range [][2]uint8{{ptPCMA, ptPCMU}, {ptPCMU, ptPCMA}} {
		if mi.formats.has(p[0]) && !offerer.formats.has(p[0]) && offerer.formats.has(p[1]) {
			return p
		}
	}
	return [2]uint8{}
}

// expired tells whether the session should end now, and why.
func (s *session) expired(now time.Time, cfg *Config) EventType {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cfg.MaxLifetime > 0 && now.Sub(s.created) >= cfg.MaxLifetime {
		return EventLifetime
	}
	last := s.lastSignal
	hold := false
	for _, st := range s.streams {
		st.mu.Lock()
		if !st.rejected {
			hold = hold || st.legs[0].hold || st.legs[1].hold
			if st.lastMedia.After(last) {
				last = st.lastMedia
			}
		}
		st.mu.Unlock()
	}
	// An unanswered session (a long ringing phase without early media) is
	// quiet by design: it gets the longer hold timeout, not the media one.
	if hold || s.tags[1] == "" {
		if cfg.HoldTimeout > 0 && now.Sub(last) >= cfg.HoldTimeout {
			return EventHoldTimeout
		}
		return 0
	}
	if cfg.Timeout > 0 && now.Sub(last) >= cfg.Timeout {
		return EventMediaTimeout
	}
	return 0
}

// close frees every stream and returns the session's final counters.
func (s *session) close(pool *portPool) sessionTotals {
	s.mu.Lock()
	s.deleted = true
	streams := slices.Clone(s.streams)
	s.mu.Unlock()
	var t sessionTotals
	for _, st := range streams {
		st.close(pool)
		st.mu.Lock()
		for i := range st.legs {
			t.addLeg(&st.legs[i])
		}
		st.mu.Unlock()
	}
	return t
}
