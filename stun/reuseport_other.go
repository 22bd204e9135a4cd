//go:build !linux

package stun

import (
	"errors"
	"syscall"
)

// reusePort is only implemented on Linux; elsewhere Config.ReusePort makes
// ListenAndServe fail rather than silently share nothing.
func reusePort(network, address string, c syscall.RawConn) error {
	return errors.New("stun: ReusePort is supported on Linux only")
}
