package stun

import "syscall"

// reusePort sets SO_REUSEPORT so that several sockets share one address
// and the kernel spreads incoming flows over them.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// soReusePort is SO_REUSEPORT, which the frozen syscall package does not
// name on Linux (golang.org/x/sys/unix does; one constant is not worth the
// dependency).
const soReusePort = 0xf
