package registrar

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// StatelessUDP wraps a SIP UDP socket so that REGISTER requests are
// answered by the registrar directly, statelessly, on several goroutines,
// and everything else is handed to whoever reads the returned conn (give it
// to sipgo's ServeUDP). This is how Kamailio's registrar answers REGISTER
// without a transaction: sipgo keeps every UDP server transaction for Timer
// J (32 s) behind one lock, which limits a busy registrar to a fraction of
// what the machine can do.
//
// A REGISTER needs no transaction: its first attempt is answered with a
// challenge whose nonce is stateless, so a retransmission may get a new one,
// and the 2xx answers to authenticated REGISTERs are remembered for 8 to
// 16 seconds by Via branch and source, so that a retransmission gets the
// same answer instead of being refused as a nonce-count replay.
//
// readers is the number of goroutines reading pc; 0 means GOMAXPROCS.
// Closing the returned conn closes pc and waits for them.
func (r *Registrar) StatelessUDP(pc net.PacketConn, readers int) net.PacketConn {
	if readers <= 0 {
		readers = runtime.GOMAXPROCS(0)
	}
	s := &statelessConn{
		PacketConn: pc,
		r:          r,
		local:      addrPortOf(pc.LocalAddr()),
		others:     make(chan datagram, 1024),
		done:       make(chan struct{}),
	}
	for i := range s.cache {
		s.cache[i].cur = make(map[string][]byte)
		s.cache[i].rotated = time.Now()
	}
	for range readers {
		s.wg.Go(s.read)
	}
	return s
}

type datagram struct {
	b    []byte
	from net.Addr
}

type statelessConn struct {
	net.PacketConn
	r      *Registrar
	local  netip.AddrPort
	others chan datagram
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	errMu  sync.Mutex
	err    error
	cache  [64]answerCache
}

// answerCache remembers encoded final responses in two generations.
type answerCache struct {
	mu        sync.Mutex
	cur, prev map[string][]byte
	rotated   time.Time
}

const answerKeep = 8 * time.Second

func (c *answerCache) get(k string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.cur[k]; ok {
		return b
	}
	return c.prev[k]
}

func (c *answerCache) put(k string, b []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.rotated) >= answerKeep {
		c.prev, c.cur, c.rotated = c.cur, make(map[string][]byte, len(c.cur)), now
	}
	c.cur[k] = b
}

func (s *statelessConn) read() {
	buf := make([]byte, 65535)
	parser := sip.NewParser()
	var out bytes.Buffer
	for {
		n, from, err := s.PacketConn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.fail(err)
			return
		}
		data := buf[:n]
		if !bytes.HasPrefix(data, []byte("REGISTER ")) {
			select {
			case s.others <- datagram{bytes.Clone(data), from}:
			case <-s.done:
				return
			}
			continue
		}
		s.register(parser, data, from, &out)
	}
}

func (s *statelessConn) register(parser *sip.Parser, data []byte, from net.Addr, out *bytes.Buffer) {
	msg, err := parser.ParseSIP(data)
	if err != nil {
		s.r.stats.malformed.Add(1)
		s.r.log.Debug("unparsable REGISTER", "source", from, "error", err)
		return
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return
	}
	src := addrPortOf(from)
	req.SetTransport("UDP")
	req.SetSource(src.String())
	// Retransmissions of an authenticated REGISTER get the first answer.
	var key string
	var sh *answerCache
	authenticated := req.GetHeader("Authorization") != nil
	if via := req.Via(); authenticated && via != nil {
		branch, _ := via.Params.Get("branch")
		key = branch + " " + src.String()
		sh = &s.cache[fnv32(key)%uint32(len(s.cache))]
		if b := sh.get(key); b != nil {
			s.PacketConn.WriteTo(b, from)
			return
		}
	}
	// sipgo's response builder fills rport and received from the source
	// set above (RFC 3581 §4); Handle adds received without rport.
	res := s.r.Handle(req, s.local)
	out.Reset()
	res.StringWrite(out)
	b := out.Bytes()
	// Only successes: a retransmission of a refused REGISTER may be
	// refused again, and caching every answer to any Authorization would
	// let anyone fill memory without logging in.
	if sh != nil && res.StatusCode >= 200 && res.StatusCode < 300 {
		b = bytes.Clone(b)
		sh.put(key, b, time.Now())
	}
	// Responses go where the request came from (RFC 3581 §4 with rport;
	// without it, RFC 3261 §18.2.2 would use the Via port: NATed clients
	// all ask for rport, and the source is where a reply can arrive).
	dst := from
	if via := req.Via(); via != nil {
		if _, ok := via.Params.Get("rport"); !ok && via.Port > 0 {
			dst = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src.Addr(), uint16(via.Port)))
		}
	}
	s.PacketConn.WriteTo(b, dst)
}

// fnv32 is FNV-1a, to pick a shard.
func fnv32(s string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

func (s *statelessConn) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.once.Do(func() { close(s.done) })
}

// ReadFrom returns the next datagram that is not a REGISTER.
func (s *statelessConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-s.others:
		return copy(b, d.b), d.from, nil
	case <-s.done:
		s.errMu.Lock()
		defer s.errMu.Unlock()
		return 0, nil, s.err
	}
}

// Close closes the socket and waits for the readers.
func (s *statelessConn) Close() error {
	err := s.PacketConn.Close()
	s.fail(net.ErrClosed)
	s.wg.Wait()
	return err
}
