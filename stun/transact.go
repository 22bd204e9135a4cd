package stun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// ErrTimeout is returned (wrapped) when a request got no response after
// all its retransmissions.
var ErrTimeout = errors.New("stun: no response")

// reply is a response and the address it came from.
type reply struct {
	msg  *stun.Message
	from netip.AddrPort
}

// session runs STUN client transactions over one UDP socket: a reader
// goroutine hands each response to the transaction waiting for its ID, so
// that several tests can be in flight at once on the same local port (the
// NAT tests must all use one mapping).
type session struct {
	pc       net.PacketConn
	rto      time.Duration
	rc, rm   int
	software []byte

	mu      sync.Mutex
	waiting map[[stun.TransactionIDSize]byte]chan reply
	done    chan struct{}
}

func newSession(pc net.PacketConn, rto time.Duration, rc, rm int, software []byte) *session {
	s := &session{
		pc: pc, rto: rto, rc: rc, rm: rm, software: software,
		waiting: map[[stun.TransactionIDSize]byte]chan reply{},
		done:    make(chan struct{}),
	}
	go s.read()
	return s
}

// close closes the socket and waits for the reader.
func (s *session) close() {
	_ = s.pc.Close()
	<-s.done
}

func (s *session) read() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, a, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || (m.Type.Class != stun.ClassSuccessResponse && m.Type.Class != stun.ClassErrorResponse) {
			continue
		}
		if _, err := m.Get(stun.AttrFingerprint); err == nil && stun.Fingerprint.Check(m) != nil {
			continue
		}
		s.mu.Lock()
		ch := s.waiting[m.TransactionID]
		delete(s.waiting, m.TransactionID)
		s.mu.Unlock()
		if ch != nil {
			ch <- reply{msg: m, from: addrPortOf(a)}
		}
	}
}

// do sends a Binding request with the given extra attributes to dst and
// waits for its response, retransmitting as RFC 8489 §6.2.1 says: after
// RTO, 2·RTO, 4·RTO, … until rc requests are sent, then rm·RTO for the
// last one.
func (s *session) do(ctx context.Context, dst netip.AddrPort, attrs ...stun.Setter) (reply, error) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	setters = append(setters, attrs...)
	if s.software != nil {
		setters = append(setters, stun.Software(s.software))
	}
	setters = append(setters, stun.Fingerprint)
	req, err := stun.Build(setters...)
	if err != nil {
		return reply{}, fmt.Errorf("stun: build request: %w", err)
	}
	ch := make(chan reply, 1)
	s.mu.Lock()
	s.waiting[req.TransactionID] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiting, req.TransactionID)
		s.mu.Unlock()
	}()

	to := net.UDPAddrFromAddrPort(dst)
	wait := s.rto
	for i := range s.rc {
		if _, err := s.pc.WriteTo(req.Raw, to); err != nil {
			return reply{}, fmt.Errorf("stun: send to %v: %w", dst, err)
		}
		if i == s.rc-1 {
			wait = time.Duration(s.rm) * s.rto
		}
		t := time.NewTimer(wait)
		select {
		case r := <-ch:
			t.Stop()
			return r, nil
		case <-ctx.Done():
			t.Stop()
			return reply{}, ctx.Err()
		case <-t.C:
		}
		wait *= 2
	}
	return reply{}, fmt.Errorf("%w from %v after %d requests", ErrTimeout, dst, s.rc)
}
