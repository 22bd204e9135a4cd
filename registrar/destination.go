package registrar

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/store"
)

// ErrUnreachable reports a binding that cannot be reached: its connection
// is gone and its Contact cannot be dialled.
var ErrUnreachable = errors.New("registrar: binding unreachable")

// Destination returns where to send a request for binding b, and over
// which transport: the address its REGISTER came from (the NAT's public
// side, or the peer of its connection), else the Contact's own host and
// port. A Contact host under .invalid (RFC 7118 §5: browsers make one up,
// since they cannot be dialled) is never dialled: without a source
// address such a binding is unreachable.
func Destination(b store.Binding) (netip.AddrPort, string, error) {
	if b.Received.IsValid() {
		return b.Received, b.Transport, nil
	}
	var u sip.Uri
	if err := sip.ParseUri(b.Contact, &u); err != nil {
		return netip.AddrPort{}, "", fmt.Errorf("%w: contact %q: %v", ErrUnreachable, b.Contact, err)
	}
	host := strings.ToLower(strings.Trim(u.Host, "[]"))
	if host == "invalid" || strings.HasSuffix(host, ".invalid") {
		return netip.AddrPort{}, "", fmt.Errorf("%w: contact host %q is not dialable", ErrUnreachable, u.Host)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		// A host name: the caller resolves it (RFC 3263).
		return netip.AddrPort{}, "", fmt.Errorf("%w: contact host %q needs DNS resolution", ErrUnreachable, u.Host)
	}
	transport := strings.ToLower(u.UriParams.GetOr("transport", "udp"))
	port := u.Port
	if port == 0 {
		port = 5060
		if strings.EqualFold(u.Scheme, "sips") || transport == "tls" {
			port = 5061
		}
	}
	return netip.AddrPortFrom(addr, uint16(port)), transport, nil
}
