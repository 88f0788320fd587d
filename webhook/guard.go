package webhook

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

var (
	// sharedSpace is RFC 6598's carrier-grade NAT range, which
	// netip.Addr.IsPrivate leaves out but which reaches internal hosts
	// just the same.
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10")
	// thisNetwork (0.0.0.0/8) is treated as unspecified: some systems
	// connect such addresses to the local host.
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	// nat64 is RFC 6052's well-known NAT64 prefix: on an IPv6-only network
	// 64:ff9b::a00:1 reaches 10.0.0.1, so the IPv4 address inside counts.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// refusedError is what the guarded dialer returns for a denied address. It
// is a type, not a message, so that the worker can find it under the
// layers net/http wraps around dial errors and fail the task for good.
type refusedError struct {
	addr  netip.Addr
	class string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("refused: %s is %s address", e.addr, e.class)
}

// checkAddr refuses the addresses DenyPrivate denies.
func checkAddr(a netip.Addr) error {
	if c := denyClass(a); c != "" {
		return &refusedError{addr: a.WithZone(""), class: c}
	}
	return nil
}

// denyClass names the class of a denied address, or returns "" for an
// address that may be dialled.
func denyClass(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case a.IsLoopback():
		return "a loopback"
	case a.IsPrivate():
		return "a private"
	case a.IsLinkLocalUnicast():
		return "a link-local"
	case a.IsMulticast():
		return "a multicast"
	case a.IsUnspecified(), thisNetwork.Contains(a):
		return "an unspecified"
	case sharedSpace.Contains(a):
		return "a shared (CGNAT)"
	}
	return ""
}

// guardTransport returns a copy of rt that refuses, at dial time, the
// addresses check rejects. Checking the dialled address rather than the
// URL's host is what defeats DNS rebinding: the name is resolved once, by
// the dialer, and the check sees the very address the socket connects to,
// on the first request and on every redirect.
//
// The copy gets its own dialer, in place of rt's, and no proxy, since a
// proxy would connect to the target on our behalf, out of the check's
// sight. It panics when rt is not an *http.Transport or dials TLS
// connections itself: a connection made elsewhere cannot be checked.
func guardTransport(rt http.RoundTripper, check func(netip.AddrPort) error) *http.Transport {
	if rt == nil {
		rt = http.DefaultTransport
	}
	base, ok := rt.(*http.Transport)
	if !ok {
		panic(fmt.Sprintf("webhook: DenyPrivate needs an *http.Transport to guard, got %T", rt))
	}
	//lint:ignore SA1019 a deprecated DialTLS set by the caller would still bypass the guard, so it must be looked at.
	if base.DialTLSContext != nil || base.DialTLS != nil {
		panic("webhook: DenyPrivate cannot guard a transport that dials TLS connections itself")
	}
	tr := base.Clone()
	tr.Proxy = nil
	d := &net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				// The dialer only hands over resolved addresses; one we
				// cannot read is refused rather than trusted.
				return fmt.Errorf("refused: cannot check address %q: %w", address, err)
			}
			return check(ap)
		},
	}
	// DialContext takes priority over the deprecated Dial, so setting it
	// is enough to route every plain and TLS connection through Control.
	tr.DialContext = d.DialContext
	return tr
}
