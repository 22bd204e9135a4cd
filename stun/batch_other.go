//go:build !linux

package stun

import "context"

// haveBatch is false where recvmmsg/sendmmsg are not available: readers
// use one system call per datagram.
const haveBatch = false

func (s *Server) readUDPBatch(ctx context.Context, us *udpSock) bool { return false }
