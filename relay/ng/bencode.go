package ng

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Bencode (the BitTorrent encoding) is what the ng protocol carries: byte
// strings "4:spam", integers "i42e", lists "l...e" and dictionaries
// "d...e" with byte-string keys in sorted order. Values decode to string,
// int64, []any and map[string]any.

// ErrBencode reports malformed bencoded input.
var ErrBencode = errors.New("ng: malformed bencode")

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 32

// Decode parses one bencoded value that must span all of b.
func Decode(b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(b) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBencode, len(b)-d.pos)
	}
	return v, nil
}

type decoder struct {
	b   []byte
	pos int
}

func (d *decoder) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrBencode, what, d.pos)
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, d.fail("nesting too deep")
	}
	if d.pos >= len(d.b) {
		return nil, d.fail("unexpected end")
	}
	switch c := d.b[d.pos]; {
	case c == 'i':
		d.pos++
		end := d.pos
		for end < len(d.b) && d.b[end] != 'e' {
			end++
		}
		if end >= len(d.b) {
			return nil, d.fail("unterminated integer")
		}
		n, err := strconv.ParseInt(string(d.b[d.pos:end]), 10, 64)
		if err != nil {
			return nil, d.fail("bad integer")
		}
		d.pos = end + 1
		return n, nil
	case c == 'l':
		d.pos++
		list := []any{}
		for {
			if d.pos >= len(d.b) {
				return nil, d.fail("unterminated list")
			}
			if d.b[d.pos] == 'e' {
				d.pos++
				return list, nil
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
	case c == 'd':
		d.pos++
		dict := map[string]any{}
		for {
			if d.pos >= len(d.b) {
				return nil, d.fail("unterminated dictionary")
			}
			if d.b[d.pos] == 'e' {
				d.pos++
				return dict, nil
			}
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			// Key order is not enforced: proxies in the field do not all
			// sort, and rtpengine does not insist either.
			dict[k] = v
		}
	case c >= '0' && c <= '9':
		return d.str()
	default:
		return nil, d.fail(fmt.Sprintf("unexpected byte %q", c))
	}
}

func (d *decoder) str() (string, error) {
	colon := d.pos
	for colon < len(d.b) && d.b[colon] >= '0' && d.b[colon] <= '9' {
		colon++
	}
	if colon == d.pos || colon >= len(d.b) || d.b[colon] != ':' || colon-d.pos > 9 {
		return "", d.fail("bad string length")
	}
	n, _ := strconv.Atoi(string(d.b[d.pos:colon]))
	start := colon + 1
	if n > len(d.b)-start {
		return "", d.fail("string longer than input")
	}
	d.pos = start + n
	return string(d.b[start:d.pos]), nil
}

// Encode appends the bencoding of v to b. v may be string, []byte, int,
// int64, uint64, bool (as 0/1), []any, []string or map[string]any; other
// types are an error.
func Encode(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(x)), 10)
		return append(append(b, ':'), x...), nil
	case []byte:
		b = strconv.AppendInt(b, int64(len(x)), 10)
		return append(append(b, ':'), x...), nil
	case int:
		return append(strconv.AppendInt(append(b, 'i'), int64(x), 10), 'e'), nil
	case int64:
		return append(strconv.AppendInt(append(b, 'i'), x, 10), 'e'), nil
	case uint64:
		return append(strconv.AppendUint(append(b, 'i'), x, 10), 'e'), nil
	case bool:
		n := 0
		if x {
			n = 1
		}
		return Encode(b, n)
	case []string:
		b = append(b, 'l')
		for _, s := range x {
			b, _ = Encode(b, s)
		}
		return append(b, 'e'), nil
	case []any:
		b = append(b, 'l')
		for _, e := range x {
			var err error
			if b, err = Encode(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b, _ = Encode(b, k)
			var err error
			if b, err = Encode(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	}
	return nil, fmt.Errorf("ng: cannot bencode %T", v)
}
