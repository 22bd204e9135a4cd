//go:build linux

package relay

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux the default sockets bypass Go's netpoller. With one goroutine per
// socket, every packet of a 50 packets/s stream parks and wakes a goroutine
// (epoll, futex, scheduler handoff), which measured above 20 µs of CPU per
// forwarded packet. Instead a few poller goroutines, one per core, each wait
// on their own epoll set and read every ready socket with plain recvfrom; a
// busy relay then gets many packets per epoll_wait. This is the design of
// rtpengine's userspace path, minus its per-packet allocations.

// rawSocket is a non-blocking UDP socket owned by a poller. It satisfies Conn
// so the rest of the relay treats it like any socket.
type rawSocket struct {
	mu     sync.RWMutex // write-locked only by Close: no I/O on a closed (reused) fd
	fd     int
	closed bool
	local  netip.AddrPort
	v6     bool
	p      *poller
	id     uint64
}

var errWouldBlock = errors.New("relay: no packet ready")

func newRawSocket(addr netip.AddrPort, bufSize int) (*rawSocket, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	family := unix.AF_INET
	if addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, err
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	} else {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: err}
	}
	if bufSize > 0 {
		// The FORCE variants pass net.core.rmem_max when privileged.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufSize) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufSize)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, bufSize) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufSize)
		}
	}
	return &rawSocket{fd: fd, local: addr, v6: family == unix.AF_INET6}, nil
}

// recv reads one datagram without blocking.
func (s *rawSocket) recv(b []byte) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	l := uint32(unsafe.Sizeof(rsa))
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, netip.AddrPort{}, net.ErrClosed
	}
	n, _, e := syscall.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
	s.mu.RUnlock()
	if e != 0 {
		if e == unix.EAGAIN {
			return 0, netip.AddrPort{}, errWouldBlock
		}
		return 0, netip.AddrPort{}, e
	}
	var from netip.AddrPort
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		pb := (*[2]byte)(unsafe.Pointer(&p.Port))
		from = netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(pb[0])<<8|uint16(pb[1]))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		pb := (*[2]byte)(unsafe.Pointer(&p.Port))
		from = netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), uint16(pb[0])<<8|uint16(pb[1]))
	}
	return int(n), from, nil
}

// ReadFromUDPAddrPort reads one datagram, polling while none is ready. The
// relay never calls it on a poller-owned socket; it exists for Conn.
func (s *rawSocket) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, from, err := s.recv(b)
		if err != errWouldBlock {
			return n, from, err
		}
		time.Sleep(time.Millisecond)
	}
}

// WriteToUDPAddrPort sends b to addr without blocking and without
// allocating; a full send buffer is an error, as a lost datagram.
func (s *rawSocket) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	var (
		r4  unix.RawSockaddrInet4
		r6  unix.RawSockaddrInet6
		ptr unsafe.Pointer
		sz  uintptr
	)
	port := addr.Port()
	if !s.v6 {
		if !addr.Addr().Unmap().Is4() {
			return 0, syscall.EAFNOSUPPORT
		}
		r4.Family = unix.AF_INET
		pb := (*[2]byte)(unsafe.Pointer(&r4.Port))
		pb[0], pb[1] = byte(port>>8), byte(port)
		r4.Addr = addr.Addr().Unmap().As4()
		ptr, sz = unsafe.Pointer(&r4), unsafe.Sizeof(r4)
	} else {
		r6.Family = unix.AF_INET6
		pb := (*[2]byte)(unsafe.Pointer(&r6.Port))
		pb[0], pb[1] = byte(port>>8), byte(port)
		r6.Addr = addr.Addr().As16()
		ptr, sz = unsafe.Pointer(&r6), unsafe.Sizeof(r6)
	}
	if len(b) == 0 {
		return 0, nil
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, net.ErrClosed
	}
	n, _, e := syscall.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, uintptr(ptr), sz)
	s.mu.RUnlock()
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func (s *rawSocket) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(s.local) }

// Close unregisters the socket from its poller and closes it. Holding the
// write lock guarantees that no read or write is using the descriptor, so a
// number the kernel reuses for a new socket can never receive stale I/O.
func (s *rawSocket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.p != nil {
		s.p.remove(s)
	}
	return unix.Close(s.fd)
}

// socketHandler is what a poller calls for each datagram read from a socket.
type socketHandler struct {
	sock   *rawSocket
	stream *stream
	side   int
	rtcp   bool
}

// poller runs one epoll loop per core, each with its own epoll set; sockets
// are dealt round-robin. One shared set with EPOLLONESHOT (any loop takes any
// socket) was measured too: re-arming costs an epoll_ctl per packet, about
// 7 µs more CPU per packet on our machines, without better tail latency.
type poller struct {
	workers []*pollWorker
	next    atomic.Uint64
	ids     atomic.Uint64
	wg      sync.WaitGroup
}

type pollWorker struct {
	epfd   int
	wakeFd int // eventfd that ends the loop

	mu       sync.RWMutex
	handlers map[uint64]*socketHandler
}

func newPoller() (*poller, error) {
	p := &poller{}
	n := runtime.GOMAXPROCS(0)
	for range n {
		w, err := newPollWorker()
		if err != nil {
			p.close()
			return nil, err
		}
		p.workers = append(p.workers, w)
	}
	for _, w := range p.workers {
		p.wg.Go(w.loop)
	}
	return p, nil
}

func newPollWorker() (*pollWorker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = 0 // id 0 is the wake-up eventfd
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, err
	}
	return &pollWorker{epfd: epfd, wakeFd: efd, handlers: map[uint64]*socketHandler{}}, nil
}

// add starts delivering the socket's datagrams to h.
func (p *poller) add(h *socketHandler) error {
	s := h.sock
	w := p.workers[p.next.Add(1)%uint64(len(p.workers))]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	s.p = p
	s.id = p.ids.Add(1)
	w.mu.Lock()
	w.handlers[s.id] = h
	w.mu.Unlock()
	// Level-triggered: a worker may leave packets queued to serve other
	// sockets and will be told again.
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = s.id
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		w.mu.Lock()
		delete(w.handlers, s.id)
		w.mu.Unlock()
		return err
	}
	return nil
}

// remove is called by rawSocket.Close with the socket's lock held.
func (p *poller) remove(s *rawSocket) {
	for _, w := range p.workers {
		w.mu.Lock()
		if _, ok := w.handlers[s.id]; ok {
			delete(w.handlers, s.id)
			_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
		}
		w.mu.Unlock()
	}
}

// maxReadsPerEvent is 1: at 50 packets/s a socket rarely holds a second
// packet, so reading until EAGAIN would cost one wasted recvfrom per packet;
// with level-triggered epoll a socket that does hold more is simply
// reported again by the next epoll_wait, which a busy worker makes anyway.
const maxReadsPerEvent = 1

func (w *pollWorker) loop() {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, maxPacket)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		now := time.Now()
		for i := range n {
			id := *(*uint64)(unsafe.Pointer(&events[i].Fd))
			if id == 0 {
				return // woken to stop
			}
			w.mu.RLock()
			h := w.handlers[id]
			w.mu.RUnlock()
			if h == nil {
				continue // closed meanwhile
			}
			for range maxReadsPerEvent {
				k, from, err := h.sock.recv(buf)
				if err != nil {
					break
				}
				h.stream.forward(h.side, h.rtcp, buf[:k], from, now)
			}
		}
	}
}

// close stops the workers and waits for them. Sockets must be closed first.
func (p *poller) close() {
	if p == nil {
		return
	}
	one := [8]byte{1}
	for _, w := range p.workers {
		_, _ = unix.Write(w.wakeFd, one[:])
	}
	p.wg.Wait()
	for _, w := range p.workers {
		unix.Close(w.epfd)
		unix.Close(w.wakeFd)
	}
}

// defaultListen returns the Linux fast-path socket factory and its poller.
func defaultListen(bufSize int) (ListenFunc, *poller, error) {
	p, err := newPoller()
	if err != nil {
		return nil, nil, err
	}
	return func(a netip.AddrPort) (Conn, error) { return newRawSocket(a, bufSize) }, p, nil
}

// attach hands a socket to the poller if it is one of ours.
func (p *poller) attach(c Conn, s *stream, side int, rtcp bool) bool {
	rs, ok := c.(*rawSocket)
	if !ok || p == nil {
		return false
	}
	return p.add(&socketHandler{sock: rs, stream: s, side: side, rtcp: rtcp}) == nil
}
