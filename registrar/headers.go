package registrar

import (
	"errors"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// headerValues returns the values of every header named name or its compact
// form, split at commas outside quotes and angle brackets, trimmed, empty
// elements dropped.
func headerValues(req *sip.Request, names ...string) []string {
	var out []string
	for _, n := range names {
		for _, h := range req.GetHeaders(n) {
			out = splitList(h.Value(), out)
		}
	}
	return out
}

// splitList appends the comma-separated elements of v to out.
func splitList(v string, out []string) []string {
	inQuote, inAngle, start := false, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == '<' && !inQuote:
			inAngle = true
		case c == '>' && !inQuote:
			inAngle = false
		case c == ',' && !inQuote && !inAngle:
			if e := strings.TrimSpace(v[start:i]); e != "" {
				out = append(out, e)
			}
			start = i + 1
		}
	}
	if e := strings.TrimSpace(v[start:]); e != "" {
		out = append(out, e)
	}
	return out
}

// tokens returns the lowercased option tags of Supported/Require-style
// headers.
func tokens(req *sip.Request, names ...string) []string {
	vs := headerValues(req, names...)
	for i, v := range vs {
		vs[i] = strings.ToLower(v)
	}
	return vs
}

func hasToken(ts []string, t string) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

var errBadNumber = errors.New("bad number")

// parseDelta parses delta-seconds (RFC 3261 §25.1). Values above 2^32-1
// are clamped, as the RFC asks.
func parseDelta(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 20 {
		return 0, errBadNumber
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadNumber
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > 1<<32-1 {
		return 1<<32 - 1, nil
	}
	return uint32(v), nil
}

// parseQ parses a q-value ("0", "0.5", "1.000") into thousandths.
func parseQ(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 5 {
		return 0, false
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart != "0" && intPart != "1" {
		return 0, false
	}
	if hasDot && len(frac) > 3 {
		return 0, false
	}
	q := 0
	if intPart == "1" {
		q = 1000
	}
	mul := 100
	for i := 0; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return 0, false
		}
		q += int(frac[i]-'0') * mul
		mul /= 10
	}
	if q > 1000 {
		return 0, false
	}
	return q, true
}

func formatQ(q int) string {
	if q >= 1000 {
		return "1"
	}
	s := strconv.Itoa(1000 + q)[1:] // three digits
	s = strings.TrimRight(s, "0")
	if s == "" {
		return "0"
	}
	return "0." + s
}

// validNATType accepts a short token such as "symmetric" or
// "port-restricted-cone".
func validNATType(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
