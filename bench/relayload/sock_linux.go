package main

import (
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The generator must cost less than the relays it measures, or the machine
// saturates on the generator first. Its phones are therefore raw
// non-blocking sockets outside Go's netpoller, sent with plain sendto and
// received by one epoll loop per core, like the relay's own fast path.

type sock struct {
	fd   int
	addr netip.AddrPort
}

func newSock(ip netip.Addr) (*sock, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ip.As4()}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &sock{fd: fd, addr: netip.AddrPortFrom(ip, uint16(sa.(*unix.SockaddrInet4).Port))}, nil
}

func (s *sock) close() { unix.Close(s.fd) }

func (s *sock) send(b []byte, dst netip.AddrPort) error {
	var r unix.RawSockaddrInet4
	r.Family = unix.AF_INET
	p := (*[2]byte)(unsafe.Pointer(&r.Port))
	p[0], p[1] = byte(dst.Port()>>8), byte(dst.Port())
	r.Addr = dst.Addr().As4()
	_, _, e := syscall.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
		uintptr(unsafe.Pointer(&r)), unsafe.Sizeof(r))
	if e != 0 {
		return e
	}
	return nil
}

func (s *sock) recv(b []byte) (int, bool) {
	n, _, e := syscall.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	if e != 0 {
		return 0, false
	}
	return int(n), true
}

// receiver reads every socket registered in its epoll set until stop is set.
type receiver struct {
	epfd  int
	socks map[int32]*sock
}

func newReceiver() (*receiver, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &receiver{epfd: fd, socks: map[int32]*sock{}}, nil
}

func (r *receiver) add(s *sock) error {
	r.socks[int32(s.fd)] = s
	return unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, s.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.fd)})
}

// run calls got with each packet; it returns once stop is set.
func (r *receiver) run(stop *atomic.Bool, got func([]byte)) {
	events := make([]unix.EpollEvent, 512)
	buf := make([]byte, 2048)
	for !stop.Load() {
		n, err := unix.EpollWait(r.epfd, events, 50)
		if err != nil && err != unix.EINTR {
			return
		}
		for i := range n {
			// One read per event: level-triggered epoll reports a socket
			// again while it holds more, and a second read would mostly
			// return EAGAIN.
			if k, ok := r.socks[events[i].Fd].recv(buf); ok {
				got(buf[:k])
			}
		}
	}
}

func (r *receiver) close() { unix.Close(r.epfd) }
