package registrar

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// ErrBadAOR reports an address-of-record that is not a sip: or sips: URI
// with a host.
var ErrBadAOR = errors.New("registrar: bad address-of-record")

// NormalizeAOR returns the canonical form of a SIP URI as an
// address-of-record: "sip:user@host" (or sips:), the host lowercased, the
// user part kept as is (user names are case-sensitive), without port,
// parameters or headers.
func NormalizeAOR(uri string) (string, error) {
	var u sip.Uri
	if err := sip.ParseUri(strings.TrimSpace(uri), &u); err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrBadAOR, uri, err)
	}
	return aorOf(&u)
}

func aorOf(u *sip.Uri) (string, error) {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "sip" && scheme != "sips" {
		return "", fmt.Errorf("%w: scheme %q", ErrBadAOR, u.Scheme)
	}
	if u.Host == "" || u.Wildcard {
		return "", fmt.Errorf("%w: no host", ErrBadAOR)
	}
	host := strings.ToLower(u.Host)
	if !validHost(host) {
		return "", fmt.Errorf("%w: bad host %q", ErrBadAOR, u.Host)
	}
	if !validUser(u.User) {
		return "", fmt.Errorf("%w: bad user part", ErrBadAOR)
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	if u.User == "" {
		return scheme + ":" + host, nil
	}
	return scheme + ":" + u.User + "@" + host, nil
}

// aorUser and aorHost split a normalised AOR.
func aorUser(aor string) string {
	_, rest, _ := strings.Cut(aor, ":")
	user, _, ok := strings.Cut(rest, "@")
	if !ok {
		return ""
	}
	return user
}

func aorHost(aor string) string {
	_, rest, _ := strings.Cut(aor, ":")
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		return rest[i+1:]
	}
	return rest
}

// validHost accepts host names, IPv4 and bracketed or bare IPv6 literals.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// validUser refuses user parts that cannot be written back into a header:
// controls, spaces and the delimiters of name-addr.
func validUser(u string) bool {
	if len(u) > 256 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' || c == '@' {
			return false
		}
	}
	return true
}
