//go:build !linux

package relay

// Outside Linux the default sockets are *net.UDPConn served by one goroutine
// each.
type poller struct{}

func defaultListen(int) (ListenFunc, *poller, error) { return listenUDP, nil, nil }

func (p *poller) attach(Conn, *stream, int, bool) bool { return false }

func (p *poller) close() {}
