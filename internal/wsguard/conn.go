package wsguard

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// guardedConn sits between the socket and sipgo's WebSocket transport. It
// replays the HTTP request the guard read, enforces the idle timeout, and
// follows the frame structure in both directions so that it can take ping
// frames out of the incoming stream and put pong frames into the outgoing
// one between sipgo's frames.
type guardedConn struct {
	net.Conn
	l  *Listener
	ip netip.Addr

	// Read side, used only by the one reading goroutine.
	replay  []byte
	in      frameParser
	scratch []byte
	ready   []byte // bytes parsed and ready for the caller

	// Write side.
	wmu     sync.Mutex
	out     frameTracker
	pending [][]byte // pongs waiting for a frame boundary

	closeOnce sync.Once
}

func newGuardedConn(c net.Conn, replay []byte, l *Listener, ip netip.Addr) *guardedConn {
	g := &guardedConn{Conn: c, l: l, ip: ip, scratch: make([]byte, 16<<10)}
	// The HTTP request passes through untouched; frames follow it.
	g.in.pass = int64(len(replay))
	g.out.http = true
	g.in.onPing = g.pong
	g.replay = replay
	return g
}

func (g *guardedConn) Read(b []byte) (int, error) {
	for len(g.ready) == 0 {
		var data []byte
		if len(g.replay) > 0 {
			data, g.replay = g.replay, nil
		} else {
			g.Conn.SetReadDeadline(time.Now().Add(g.l.cfg.IdleTimeout))
			n, err := g.Conn.Read(g.scratch)
			if n == 0 && err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					g.l.st.idle.Add(1)
				}
				return 0, err
			}
			data = g.scratch[:n]
		}
		g.ready = g.in.feed(data, g.ready[:0])
	}
	n := copy(b, g.ready)
	g.ready = g.ready[n:]
	return n, nil
}

// pong answers a ping with its payload: now if no frame of sipgo's is half
// written, else at the end of that frame.
func (g *guardedConn) pong(payload []byte) {
	frame := make([]byte, 0, 2+len(payload))
	frame = append(frame, 0x80|0xA, byte(len(payload)))
	frame = append(frame, payload...)
	g.l.st.pings.Add(1)
	g.wmu.Lock()
	defer g.wmu.Unlock()
	if g.out.boundary() {
		g.Conn.Write(frame)
		return
	}
	if len(g.pending) < 16 {
		g.pending = append(g.pending, frame)
	}
}

func (g *guardedConn) Write(b []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	n, err := g.Conn.Write(b)
	g.out.track(b[:n])
	if err == nil && g.out.boundary() {
		for _, f := range g.pending {
			g.Conn.Write(f)
		}
		g.pending = nil
	}
	return n, err
}

func (g *guardedConn) Close() error {
	err := g.Conn.Close()
	g.closeOnce.Do(func() {
		g.l.release(g.ip)
		g.l.st.open.Add(-1)
	})
	return err
}

// frameParser follows client-to-server frames (RFC 6455 §5.2), passing
// every byte through except ping frames, which it hands to onPing.
type frameParser struct {
	pass   int64  // bytes to pass through unparsed (HTTP head, payloads)
	hdr    []byte // partial frame header
	ping   []byte // ping payload being collected
	pingN  int    // ping payload bytes still to come
	inPing bool
	mask   [4]byte
	masked bool
	onPing func(payload []byte)
}

func headerLen(h []byte) int {
	if len(h) < 2 {
		return 2
	}
	n := 2
	switch h[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if h[1]&0x80 != 0 {
		n += 4
	}
	return n
}

func payloadLen(h []byte) int64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return int64(h[2])<<8 | int64(h[3])
	case 127:
		var v int64
		for i := 2; i < 10; i++ {
			v = v<<8 | int64(h[i])
		}
		return v
	default:
		return int64(l)
	}
}

func (p *frameParser) feed(data, out []byte) []byte {
	for len(data) > 0 {
		switch {
		case p.pass > 0:
			n := int64(len(data))
			if n > p.pass {
				n = p.pass
			}
			out = append(out, data[:n]...)
			p.pass -= n
			data = data[n:]
		case p.inPing:
			n := min(len(data), p.pingN)
			p.ping = append(p.ping, data[:n]...)
			p.pingN -= n
			data = data[n:]
			if p.pingN == 0 {
				if p.masked {
					for i := range p.ping {
						p.ping[i] ^= p.mask[i%4]
					}
				}
				p.inPing = false
				p.onPing(p.ping)
				p.ping = p.ping[:0]
			}
		default:
			p.hdr = append(p.hdr, data[0])
			data = data[1:]
			if len(p.hdr) < headerLen(p.hdr) {
				continue
			}
			opcode := p.hdr[0] & 0x0f
			plen := payloadLen(p.hdr)
			if opcode == 0x9 && plen <= 125 && p.hdr[0]&0x80 != 0 {
				p.masked = p.hdr[1]&0x80 != 0
				if p.masked {
					copy(p.mask[:], p.hdr[len(p.hdr)-4:])
				}
				p.hdr = p.hdr[:0]
				if plen == 0 {
					p.onPing(nil)
					continue
				}
				p.inPing, p.pingN = true, int(plen)
				continue
			}
			out = append(out, p.hdr...)
			p.pass = plen
			p.hdr = p.hdr[:0]
		}
	}
	return out
}

// frameTracker follows the server's outgoing stream: the HTTP handshake
// response, then frames, to know where one frame ends.
type frameTracker struct {
	http bool   // still in the handshake response
	tail []byte // last bytes of the handshake response, to find its end
	pass int64  // payload bytes of the current frame still to come
	hdr  []byte // partial frame header
}

func (t *frameTracker) boundary() bool { return !t.http && t.pass == 0 && len(t.hdr) == 0 }

func (t *frameTracker) track(b []byte) {
	for len(b) > 0 {
		switch {
		case t.http:
			t.tail = append(t.tail, b[0])
			b = b[1:]
			if len(t.tail) > 4 {
				t.tail = t.tail[len(t.tail)-4:]
			}
			if string(t.tail) == "\r\n\r\n" {
				t.http = false
			}
		case t.pass > 0:
			n := int64(len(b))
			if n > t.pass {
				n = t.pass
			}
			t.pass -= n
			b = b[n:]
		default:
			t.hdr = append(t.hdr, b[0])
			b = b[1:]
			if len(t.hdr) < headerLen(t.hdr) {
				continue
			}
			t.pass = payloadLen(t.hdr)
			t.hdr = t.hdr[:0]
		}
	}
}
