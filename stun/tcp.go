package stun

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// maxStreamMessage caps one STUN message over TCP or TLS. RFC 8489 §6.2.2
// frames messages by the length in their header (up to 64 KiB); a Binding
// request is tiny, so anything this large is abuse and ends the connection.
const maxStreamMessage = maxDatagram

// ServeStream answers STUN over a stream listener: TCP, or TLS when l is a
// tls.Listener (crypto/tls.NewListener). It accepts connections until ctx
// ends or the server is closed, then closes l and every connection, and
// returns after all their goroutines have ended: ErrServerClosed after
// Close or Shutdown, else ctx's error.
//
// Messages are framed per RFC 8489 §6.2.2: each is read whole by the length
// in its header. A byte stream that does not frame as STUN closes the
// connection, because there is no way to find the next message boundary.
func (s *Server) ServeStream(ctx context.Context, l net.Listener) error {
	if !s.track(l) {
		_ = l.Close()
		return ErrServerClosed
	}
	defer s.untrack(l)
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	s.log.Info("serving stream", "addr", l.Addr().String())

	var local sync.WaitGroup
	defer local.Wait()
	backoff := time.Duration(0)
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() || ctx.Err() != nil {
				_ = l.Close()
				return s.serveResult(ctx)
			}
			// Temporary accept failures (EMFILE): back off as
			// net/http does rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		backoff = 0
		s.stats.accepted.Add(1)
		if s.stats.conns.Load() >= int64(s.cfg.MaxConns) || !s.track(c) {
			s.stats.tooMany.Add(1)
			_ = c.Close()
			continue
		}
		s.stats.conns.Add(1)
		if !s.spawn(&local, func() { s.serveConn(c) }) {
			s.stats.conns.Add(-1)
			s.untrack(c)
			_ = c.Close()
		}
	}
}

// serveConn answers the requests of one connection in order.
func (s *Server) serveConn(c net.Conn) {
	defer func() {
		s.untrack(c)
		_ = c.Close()
		s.stats.conns.Add(-1)
	}()
	o := origin{local: addrPortOf(c.LocalAddr()), stream: true}
	src := addrPortOf(c.RemoteAddr())
	if tc, ok := c.(*tls.Conn); ok {
		// tls.Conn reports the addresses of the underlying conn, but
		// its handshake runs inside the first Read; bound it.
		_ = tc.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if err := tc.Handshake(); err != nil {
			s.log.Debug("TLS handshake failed", "src", src, "err", err)
			return
		}
	}
	w := newWorker()
	for {
		if s.isClosed() {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if _, err := io.ReadFull(c, w.buf[:headerSize]); err != nil {
			return
		}
		n := headerSize + int(binary.BigEndian.Uint16(w.buf[2:4]))
		if w.buf[0]&0xC0 != 0 || n > maxStreamMessage {
			s.stats.drop(dropNotSTUN)
			s.debug("bad framing, closing", dropNotSTUN, src)
			return
		}
		if _, err := io.ReadFull(c, w.buf[headerSize:n]); err != nil {
			return
		}
		out, _, _, ok := s.answer(w, w.buf[:n], src, &o)
		if !ok {
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if _, err := c.Write(out); err != nil {
			s.stats.drop(dropWriteFailed)
			return
		}
	}
}
