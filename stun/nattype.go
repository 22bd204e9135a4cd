package stun

import (
	"fmt"
	"net/netip"
	"strings"
)

// Behavior is a NAT's mapping or filtering behaviour as RFC 4787 defines
// them and RFC 5780 §4.3–4.4 measures them.
type Behavior int

const (
	// BehaviorUnknown: the test could not be run or gave no usable answer.
	BehaviorUnknown Behavior = iota
	// EndpointIndependent: mapping — one public address for every
	// destination; filtering — anyone may send to that address.
	EndpointIndependent
	// AddressDependent: mapping — a new public address per destination
	// IP; filtering — only IPs the client has sent to may answer.
	AddressDependent
	// AddressAndPortDependent: mapping — a new public address per
	// destination IP and port; filtering — only exact IP:port pairs the
	// client has sent to may answer.
	AddressAndPortDependent
)

func (b Behavior) String() string {
	switch b {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressAndPortDependent:
		return "address-and-port-dependent"
	}
	return "unknown"
}

// NATType is the classic RFC 3489 classification, which folds mapping and
// filtering into one word that telephony people still use.
type NATType int

const (
	// TypeUnknown: the tests did not give enough to classify; see
	// Result.Partial.
	TypeUnknown NATType = iota
	// UDPBlocked: no answer to a plain Binding request: UDP does not get
	// through at all.
	UDPBlocked
	// OpenInternet: no NAT, no filtering.
	OpenInternet
	// SymmetricFirewall: no NAT, but a firewall that only lets in answers
	// from where the client has sent.
	SymmetricFirewall
	// FullCone: endpoint-independent mapping and filtering.
	FullCone
	// RestrictedCone: endpoint-independent mapping, address-dependent
	// filtering.
	RestrictedCone
	// PortRestrictedCone: endpoint-independent mapping,
	// address-and-port-dependent filtering. Linux masquerade is one.
	PortRestrictedCone
	// Symmetric: mapping that depends on the destination. Peer-to-peer
	// media cannot work reliably through it.
	Symmetric
)

func (t NATType) String() string {
	switch t {
	case UDPBlocked:
		return "UDP blocked"
	case OpenInternet:
		return "open internet"
	case SymmetricFirewall:
		return "symmetric UDP firewall"
	case FullCone:
		return "full cone"
	case RestrictedCone:
		return "restricted cone"
	case PortRestrictedCone:
		return "port-restricted cone"
	case Symmetric:
		return "symmetric"
	}
	return "unknown"
}

// Result is what Classify learned about the path to one server.
type Result struct {
	Server netip.AddrPort // the server tested
	Local  netip.AddrPort // the local address the tests ran from
	// Public is the address the server saw (XOR-MAPPED-ADDRESS of test
	// I): where peers can reach this client. Invalid if UDPBlocked.
	Public netip.AddrPort
	// Other is the server's RFC 5780 alternate address (OTHER-ADDRESS),
	// invalid if the server has none.
	Other netip.AddrPort
	// BehindNAT reports that Public differs from Local.
	BehindNAT bool
	Mapping   Behavior
	Filtering Behavior
	Type      NATType
	// Partial is set when some tests could not run, most often because
	// the server does not implement RFC 5780; Notes says which and why.
	// Fields that could not be measured are Unknown.
	Partial bool
	Notes   []string
}

// NeedsRelay answers the question the rest of the SDK asks: must this
// client's media go through the relay? True for a symmetric NAT (its
// public address changes per peer, so the address the peer learns is
// wrong), for UDP blocked, and — to be safe — for a NAT whose mapping
// could not be measured. False otherwise.
func (r Result) NeedsRelay() bool {
	switch r.Type {
	case Symmetric, UDPBlocked:
		return true
	case TypeUnknown:
		return r.BehindNAT && r.Mapping != EndpointIndependent
	}
	return false
}

// String renders the result for people, one fact per line.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server:     %v\n", r.Server)
	if r.Other.IsValid() {
		fmt.Fprintf(&b, "alternate:  %v\n", r.Other)
	}
	fmt.Fprintf(&b, "local:      %v\n", r.Local)
	if r.Public.IsValid() {
		fmt.Fprintf(&b, "public:     %v\n", r.Public)
		fmt.Fprintf(&b, "behind NAT: %v\n", r.BehindNAT)
	}
	fmt.Fprintf(&b, "mapping:    %v\n", r.Mapping)
	fmt.Fprintf(&b, "filtering:  %v\n", r.Filtering)
	fmt.Fprintf(&b, "NAT type:   %v\n", r.Type)
	fmt.Fprintf(&b, "relay:      %v\n", map[bool]string{true: "needed", false: "not needed"}[r.NeedsRelay()])
	if r.Partial {
		b.WriteString("PARTIAL RESULT:\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

// classicType folds the measured behaviours into the RFC 3489 name.
func classicType(natted bool, mapping, filtering Behavior) NATType {
	if !natted {
		switch filtering {
		case EndpointIndependent:
			return OpenInternet
		case AddressDependent, AddressAndPortDependent:
			return SymmetricFirewall
		}
		return TypeUnknown
	}
	switch mapping {
	case AddressDependent, AddressAndPortDependent:
		return Symmetric
	case BehaviorUnknown:
		return TypeUnknown
	}
	switch filtering {
	case EndpointIndependent:
		return FullCone
	case AddressDependent:
		return RestrictedCone
	case AddressAndPortDependent:
		return PortRestrictedCone
	}
	return TypeUnknown
}
