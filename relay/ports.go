package relay

import (
	"fmt"
	"net/netip"
	"sync"
)

// portPool hands out RTP/RTCP port pairs (RTP on an even port, RTCP on the
// next odd one, RFC 3550 section 11) from a fixed range.
//
// Allocation walks the range round-robin from where the last one stopped
// instead of reusing the lowest free pair. A freshly freed pair is therefore
// the last to be handed out again, which gives the stray packets of an ended
// call (and RTP Bleed probes aimed at it) the longest possible time to find
// nothing listening rather than a new call.
type portPool struct {
	addr   netip.Addr
	first  uint16 // first even port
	n      int    // number of pairs
	listen ListenFunc

	mu     sync.Mutex
	used   []bool
	next   int
	inUse  int
	closed bool
}

// portPair is an allocated RTP/RTCP socket pair.
type portPair struct {
	rtp, rtcp Conn
	port      uint16 // RTP port; RTCP is port+1
	idx       int
}

func newPortPool(addr netip.Addr, minPort, maxPort uint16, listen ListenFunc) (*portPool, error) {
	first := minPort
	if first%2 == 1 {
		first++
	}
	if first == 0 || int(maxPort) < int(first)+1 {
		return nil, fmt.Errorf("%w: range %d-%d holds no RTP/RTCP pair", ErrConfig, minPort, maxPort)
	}
	n := (int(maxPort) - int(first) + 1) / 2
	return &portPool{addr: addr, first: first, n: n, listen: listen, used: make([]bool, n)}, nil
}

// alloc binds the next free pair. A pair whose ports are taken by another
// process is skipped; when every pair has been tried, alloc returns
// ErrNoPorts without blocking.
func (p *portPool) alloc() (portPair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return portPair{}, ErrServerClosed
	}
	var lastErr error
	for range p.n {
		i := p.next
		p.next = (p.next + 1) % p.n
		if p.used[i] {
			continue
		}
		port := p.first + uint16(2*i)
		rtp, err := p.listen(netip.AddrPortFrom(p.addr, port))
		if err != nil {
			lastErr = err
			continue
		}
		rtcp, err := p.listen(netip.AddrPortFrom(p.addr, port+1))
		if err != nil {
			rtp.Close()
			lastErr = err
			continue
		}
		p.used[i] = true
		p.inUse++
		return portPair{rtp: rtp, rtcp: rtcp, port: port, idx: i}, nil
	}
	if lastErr != nil {
		return portPair{}, fmt.Errorf("%w (last bind error: %v)", ErrNoPorts, lastErr)
	}
	return portPair{}, ErrNoPorts
}

// free closes the pair's sockets and returns it to the pool.
func (p *portPool) free(pp portPair) {
	if pp.rtp == nil {
		return
	}
	pp.rtp.Close()
	pp.rtcp.Close()
	p.mu.Lock()
	if p.used[pp.idx] {
		p.used[pp.idx] = false
		p.inUse--
	}
	p.mu.Unlock()
}

func (p *portPool) stats() (inUse, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse, p.n
}

func (p *portPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}
