//go:build linux

package stun

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux a reader moves datagrams in batches with recvmmsg and sendmmsg:
// under load one system call carries up to batchSize requests, and as many
// responses, instead of one each. That is most of the cost of a STUN
// answer, which is otherwise a few hundred nanoseconds of work. At low
// load a batch is a single datagram and nothing waits to fill it.
//
// golang.org/x/net/ipv4 has ReadBatch, but it returns each source as a
// freshly allocated net.Addr; the calls below keep sources as raw
// sockaddrs in the reader's own arrays and allocate nothing.

const batchSize = 32

// haveBatch tells readUDP to use batchIO for *net.UDPConn sockets.
const haveBatch = true

// mmsghdr is struct mmsghdr of recvmmsg(2). Go's natural alignment pads it
// exactly as C does on every Linux architecture.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// outSlot is the size of one queued response; responses are < 200 bytes.
const outSlot = 512

// batchIO holds one reader's batches. It points into itself, so it is
// always used through a pointer and never copied.
type batchIO struct {
	rc syscall.RawConn

	in     [batchSize]mmsghdr
	inIov  [batchSize]unix.Iovec
	inName [batchSize]unix.RawSockaddrInet6
	inBuf  [batchSize][maxDatagram]byte
	n      int
	rerr   error

	out     [batchSize]mmsghdr
	outIov  [batchSize]unix.Iovec
	outName [batchSize]unix.RawSockaddrInet6
	outBuf  [batchSize][outSlot]byte
	nOut    int
	sent    int
	failed  int

	readFn, writeFn func(fd uintptr) bool // built once: no closure per call
}

func newBatchIO(c *net.UDPConn) (*batchIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchIO{rc: rc}
	for i := range batchSize {
		b.inIov[i].Base = &b.inBuf[i][0]
		b.inIov[i].SetLen(maxDatagram)
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.SetIovlen(1)
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.inName[i]))
		b.outIov[i].Base = &b.outBuf[i][0]
		b.out[i].hdr.Iov = &b.outIov[i]
		b.out[i].hdr.SetIovlen(1)
		b.out[i].hdr.Name = (*byte)(unsafe.Pointer(&b.outName[i]))
	}
	b.readFn = b.recv
	b.writeFn = b.send
	return b, nil
}

func (b *batchIO) recv(fd uintptr) bool {
	for i := range batchSize {
		b.in[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.in[i].hdr.Flags = 0
		b.in[i].len = 0
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), batchSize, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.n, b.rerr = int(r), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait in the poller
		}
		b.n, b.rerr = 0, e
		return true
	}
}

func (b *batchIO) send(fd uintptr) bool {
	for b.sent < b.nOut {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.nOut-b.sent), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			b.sent += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			// sendmmsg reports an error only for the first message of
			// the call: skip it and send the rest.
			b.failed++
			b.sent++
		}
	}
	return true
}

// read fills the in batch; it blocks in the runtime poller, so deadlines
// and Close interrupt it as they do ReadFrom.
func (b *batchIO) read() (int, error) {
	if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	return b.n, b.rerr
}

// datagram returns the i-th datagram of the in batch and its source.
func (b *batchIO) datagram(i int) ([]byte, netip.AddrPort) {
	return b.inBuf[i][:b.in[i].len], sockaddrAddrPort(&b.inName[i])
}

// queue adds a response to datagram i's source, with port as its port
// (RESPONSE-PORT may change it), to the out batch. It reports false if the
// response does not fit a slot.
func (b *batchIO) queue(resp []byte, i int, port uint16) bool {
	if len(resp) > outSlot || b.nOut == batchSize {
		return false
	}
	k := b.nOut
	copy(b.outBuf[k][:], resp)
	b.outIov[k].SetLen(len(resp))
	b.outName[k] = b.inName[i]
	b.outName[k].Port = htons(port) // same offset in sockaddr_in and sockaddr_in6
	b.out[k].hdr.Namelen = b.in[i].hdr.Namelen
	b.nOut++
	return true
}

// flush sends the out batch and returns how many responses failed.
func (b *batchIO) flush() (failed int, err error) {
	if b.nOut == 0 {
		return 0, nil
	}
	b.sent, b.failed = 0, 0
	err = b.rc.Write(b.writeFn)
	failed = b.failed + (b.nOut - b.sent)
	b.nOut = 0
	return failed, err
}

func htons(p uint16) uint16 {
	var v uint16
	bp := (*[2]byte)(unsafe.Pointer(&v))
	bp[0], bp[1] = byte(p>>8), byte(p)
	return v
}

func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port := uint16(pb[0])<<8 | uint16(pb[1])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
	}
	return netip.AddrPort{}
}

// readUDPBatch is readUDP for a *net.UDPConn on Linux.
func (s *Server) readUDPBatch(ctx context.Context, us *udpSock) bool {
	b, err := newBatchIO(us.fast)
	if err != nil {
		return false
	}
	w := newWorker()
	failures := 0
	for {
		n, err := b.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() || ctx.Err() != nil {
				return true
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				_ = us.pc.SetReadDeadline(time.Time{})
				continue
			}
			if failures++; failures > 100 {
				s.log.Error("UDP socket keeps failing, stop reading it", "addr", us.local, "err", err)
				return true
			}
			continue
		}
		failures = 0
		for i := range n {
			data, src := b.datagram(i)
			out, dst, from, ok := s.answer(w, data, src, &us.origin)
			if !ok {
				continue
			}
			if (us.quad == nil || from == us.role) && b.queue(out, i, dst.Port()) {
				continue
			}
			s.sendVia(us, from, out, dst)
		}
		if failed, err := b.flush(); failed > 0 {
			s.stats.dropped[dropWriteFailed].Add(uint64(failed))
			if errors.Is(err, net.ErrClosed) {
				return true
			}
		}
	}
}
