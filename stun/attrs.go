package stun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pion/stun/v3"
)

// pion/stun knows the attribute codes of RFC 5780 but has typed values only
// for OTHER-ADDRESS and RESPONSE-ORIGIN, and those go through net.IP (which
// allocates). The types below add CHANGE-REQUEST and RESPONSE-PORT, and
// netip-based address attributes that the server's hot path can encode
// without allocating. They all implement stun.Setter and stun.Getter so they
// mix freely with pion's own attributes in Message.Build and Message.Parse.

const (
	magicCookie = 0x2112A442
	headerSize  = 20

	familyIPv4 = 0x01
	familyIPv6 = 0x02

	// changeIPFlag and changePortFlag are the two bits of the CHANGE-REQUEST
	// value (RFC 5780 §7.2).
	changeIPFlag   = 0x4
	changePortFlag = 0x2
)

// Attribute codes that RFC 3489 defined and RFC 5389 retired. Classic
// clients still read them, so the server sends them to those clients.
const (
	attrSourceAddress  = stun.AttrSourceAddress  // SOURCE-ADDRESS (RFC 3489 §11.2.5)
	attrChangedAddress = stun.AttrChangedAddress // CHANGED-ADDRESS (RFC 3489 §11.2.3)
)

// ErrBadAttribute reports an attribute value with the wrong length or an
// unknown address family.
var ErrBadAttribute = errors.New("stun: malformed attribute")

// ChangeRequest is the RFC 5780 §7.2 CHANGE-REQUEST attribute: it asks the
// server to send the response from its alternate IP address, its alternate
// port, or both.
type ChangeRequest struct {
	IP   bool // "change IP" flag
	Port bool // "change port" flag
}

// AddTo adds CHANGE-REQUEST to m.
func (c ChangeRequest) AddTo(m *stun.Message) error {
	var v [4]byte
	if c.IP {
		v[3] |= changeIPFlag
	}
	if c.Port {
		v[3] |= changePortFlag
	}
	m.Add(stun.AttrChangeRequest, v[:])
	return nil
}

// GetFrom decodes CHANGE-REQUEST from m.
func (c *ChangeRequest) GetFrom(m *stun.Message) error {
	v, err := m.Get(stun.AttrChangeRequest)
	if err != nil {
		return err
	}
	if len(v) != 4 {
		return fmt.Errorf("%w: CHANGE-REQUEST length %d", ErrBadAttribute, len(v))
	}
	c.IP = v[3]&changeIPFlag != 0
	c.Port = v[3]&changePortFlag != 0
	return nil
}

// ResponsePort is the RFC 5780 §7.5 RESPONSE-PORT attribute: the port the
// server sends the response to, instead of the request's source port.
type ResponsePort uint16

// AddTo adds RESPONSE-PORT to m.
func (p ResponsePort) AddTo(m *stun.Message) error {
	var v [4]byte // port, then two bytes of padding-in-value (RFC 5780 §7.5)
	binary.BigEndian.PutUint16(v[:2], uint16(p))
	m.Add(stun.AttrResponsePort, v[:])
	return nil
}

// GetFrom decodes RESPONSE-PORT from m.
func (p *ResponsePort) GetFrom(m *stun.Message) error {
	v, err := m.Get(stun.AttrResponsePort)
	if err != nil {
		return err
	}
	if len(v) != 4 {
		return fmt.Errorf("%w: RESPONSE-PORT length %d", ErrBadAttribute, len(v))
	}
	*p = ResponsePort(binary.BigEndian.Uint16(v[:2]))
	return nil
}

// AddrAttr is an address attribute in the plain MAPPED-ADDRESS encoding
// (RFC 8489 §14.1): MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN, and the
// classic SOURCE-ADDRESS and CHANGED-ADDRESS. Type says which.
type AddrAttr struct {
	Type stun.AttrType
	Addr netip.AddrPort
}

// AddTo adds the attribute to m.
func (a AddrAttr) AddTo(m *stun.Message) error {
	var v [20]byte
	n, err := putAddr(v[:], a.Addr, nil)
	if err != nil {
		return err
	}
	m.Add(a.Type, v[:n])
	return nil
}

// GetFrom decodes the attribute a.Type from m into a.Addr.
func (a *AddrAttr) GetFrom(m *stun.Message) error {
	v, err := m.Get(a.Type)
	if err != nil {
		return err
	}
	a.Addr, err = getAddr(v, nil)
	return err
}

// XORAddrAttr is an address attribute in the XOR-MAPPED-ADDRESS encoding
// (RFC 8489 §14.2). Type is normally stun.AttrXORMappedAddress.
type XORAddrAttr struct {
	Type stun.AttrType
	Addr netip.AddrPort
}

// AddTo adds the attribute to m, XOR-ed with m's transaction ID, which must
// be set before.
func (a XORAddrAttr) AddTo(m *stun.Message) error {
	var v [20]byte
	n, err := putAddr(v[:], a.Addr, &m.TransactionID)
	if err != nil {
		return err
	}
	m.Add(a.Type, v[:n])
	return nil
}

// GetFrom decodes the attribute a.Type from m into a.Addr.
func (a *XORAddrAttr) GetFrom(m *stun.Message) error {
	v, err := m.Get(a.Type)
	if err != nil {
		return err
	}
	a.Addr, err = getAddr(v, &m.TransactionID)
	return err
}

// putAddr writes the address attribute value for ap into v (at least 20
// bytes) and returns its length. A non-nil txid selects the XOR encoding.
// IPv4-mapped IPv6 addresses (seen on dual-stack sockets) are sent as IPv4,
// which is what the client's own stack sees.
func putAddr(v []byte, ap netip.AddrPort, txid *[stun.TransactionIDSize]byte) (int, error) {
	ip := ap.Addr().Unmap()
	port := ap.Port()
	v[0] = 0
	if txid != nil {
		port ^= magicCookie >> 16
	}
	binary.BigEndian.PutUint16(v[2:4], port)
	switch {
	case ip.Is4():
		v[1] = familyIPv4
		a := ip.As4()
		copy(v[4:8], a[:])
		if txid != nil {
			binary.BigEndian.PutUint32(v[4:8], binary.BigEndian.Uint32(v[4:8])^magicCookie)
		}
		return 8, nil
	case ip.Is6():
		v[1] = familyIPv6
		a := ip.As16()
		copy(v[4:20], a[:])
		if txid != nil {
			xorV6(v[4:20], txid)
		}
		return 20, nil
	}
	return 0, fmt.Errorf("%w: invalid address %v", ErrBadAttribute, ap)
}

// getAddr parses an address attribute value; a non-nil txid selects the XOR
// encoding.
func getAddr(v []byte, txid *[stun.TransactionIDSize]byte) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, fmt.Errorf("%w: address length %d", ErrBadAttribute, len(v))
	}
	port := binary.BigEndian.Uint16(v[2:4])
	if txid != nil {
		port ^= magicCookie >> 16
	}
	switch {
	case v[1] == familyIPv4 && len(v) == 8:
		var a [4]byte
		copy(a[:], v[4:8])
		if txid != nil {
			binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])^magicCookie)
		}
		return netip.AddrPortFrom(netip.AddrFrom4(a), port), nil
	case v[1] == familyIPv6 && len(v) == 20:
		var a [16]byte
		copy(a[:], v[4:20])
		if txid != nil {
			xorV6(a[:], txid)
		}
		return netip.AddrPortFrom(netip.AddrFrom16(a), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%w: address family %d length %d", ErrBadAttribute, v[1], len(v))
}

// xorV6 XORs a 16-byte IPv6 address with the magic cookie followed by the
// transaction ID (RFC 8489 §14.2).
func xorV6(b []byte, txid *[stun.TransactionIDSize]byte) {
	var k [16]byte
	binary.BigEndian.PutUint32(k[:4], magicCookie)
	copy(k[4:], txid[:])
	for i := range 16 {
		b[i] ^= k[i]
	}
}
