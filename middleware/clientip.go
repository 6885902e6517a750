package middleware

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how much of X-Forwarded-For is read.
const maxForwardedHops = 32

type clientIPKey struct{}

// ClientIP returns middleware that resolves the client's address with
// ResolveClientIP and stores it in the request context, for
// ClientIPFromContext.
func ClientIP(trusted []netip.Prefix) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ip := ResolveClientIP(r, trusted)
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip)))
		})
	}
}

// ClientIPFromContext returns the address ClientIP stored, and whether
// there was one.
func ClientIPFromContext(ctx context.Context) (netip.Addr, bool) {
	ip, ok := ctx.Value(clientIPKey{}).(netip.Addr)
	return ip, ok
}

// ResolveClientIP returns the address of the client that sent r. It is the
// connection's peer, unless that peer is a trusted proxy: then
// X-Forwarded-For is read from the right (the entry the nearest proxy
// added) and the first address that is not a trusted proxy is the client.
// An entry that is not an address stops the walk at the last good one, so a
// client cannot choose the address it is throttled by: only trusted proxies
// are believed. With no trusted proxies the header is ignored.
func ResolveClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ip := peerIP(r.RemoteAddr)
	if !isTrusted(ip, trusted) {
		return ip
	}
	hops := forwardedFor(r.Header)
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(hops[i])
		if err != nil {
			return ip
		}
		ip = hop.Unmap()
		if !isTrusted(ip, trusted) {
			return ip
		}
	}
	return ip
}

// forwardedFor returns the addresses of every X-Forwarded-For header line,
// in order, at most maxForwardedHops of the nearest ones.
func forwardedFor(h http.Header) []string {
	var hops []string
	for _, line := range h.Values("X-Forwarded-For") {
		for hop := range strings.SplitSeq(line, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	if len(hops) > maxForwardedHops {
		hops = hops[len(hops)-maxForwardedHops:]
	}
	return hops
}

func peerIP(remoteAddr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, _ := netip.ParseAddr(host) // the zero Addr when RemoteAddr is not an address
	return ip.Unmap()
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
