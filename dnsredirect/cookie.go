package dnsredirect

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018,
// and the amplification cap they lift.
//
// A UDP reply to a query without a valid server cookie is at most
// maxAmplification times the query's size: a forged source address gets
// little back, and a larger answer is sent truncated (TC) so the client
// asks over TCP or again with the cookie from the truncated reply, which
// carries a fresh one. A valid cookie proves the client received an earlier
// reply at its address, so it gets the full UDP size.
//
// The server cookie is 16 bytes: version 1, three reserved bytes, a 32-bit
// timestamp, and SipHash-2-4 over (client cookie | version | reserved |
// timestamp | client address) keyed with the server secret. It is valid
// from an hour in the past to five minutes ahead; one older than half an
// hour is replaced in the reply.

// maxAmplification bounds a UDP reply to a query without a valid cookie,
// as a multiple of the query's size.
const maxAmplification = 10

const (
	optCookie       = 10 // EDNS option code (RFC 7873)
	clientCookieLen = 8
	serverCookieLen = 16 // what this server issues (RFC 9018)
	maxServerCookie = 32
	cookieVersion   = 1

	cookieLifetime = 3600 // seconds a server cookie is accepted
	cookieSkew     = 300  // seconds a timestamp may be ahead of the clock
	cookieRenew    = 1800 // a cookie this old is replaced in the reply
)

// cookieSecret keys the server cookie's SipHash.
type cookieSecret struct{ k0, k1 uint64 }

func newCookieSecret(key [16]byte) cookieSecret {
	return cookieSecret{binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])}
}

func randomCookieSecret() cookieSecret {
	var key [16]byte
	rand.Read(key[:])
	return newCookieSecret(key)
}

// hash is SipHash-2-4 of client | version | reserved | timestamp | addr,
// where vrt is the 8 bytes of version, reserved and timestamp.
func (s cookieSecret) hash(client *[clientCookieLen]byte, vrt []byte, addr netip.Addr) uint64 {
	var msg [clientCookieLen + 8 + 16]byte
	n := copy(msg[:], client[:])
	n += copy(msg[n:], vrt[:8])
	if addr.Is4() {
		a := addr.As4()
		n += copy(msg[n:], a[:])
	} else {
		a := addr.As16()
		n += copy(msg[n:], a[:])
	}
	return siphash24(s.k0, s.k1, msg[:n])
}

// issue writes a fresh server cookie for client at addr and time now.
func (s cookieSecret) issue(dst *[serverCookieLen]byte, client *[clientCookieLen]byte, addr netip.Addr, now uint32) {
	dst[0], dst[1], dst[2], dst[3] = cookieVersion, 0, 0, 0
	binary.BigEndian.PutUint32(dst[4:8], now)
	binary.LittleEndian.PutUint64(dst[8:], s.hash(client, dst[:8], addr))
}

// verify reports whether server is a cookie this secret issued to client
// at addr that is still valid at now, and whether it should be renewed.
func (s cookieSecret) verify(client *[clientCookieLen]byte, server []byte, addr netip.Addr, now uint32) (valid, renew bool) {
	if len(server) != serverCookieLen || server[0] != cookieVersion {
		return false, false
	}
	ts := binary.BigEndian.Uint32(server[4:8])
	age := int32(now - ts) // serial arithmetic: the timestamp wraps
	if age > cookieLifetime || age < -cookieSkew {
		return false, false
	}
	if binary.LittleEndian.Uint64(server[8:]) != s.hash(client, server[:8], addr) {
		return false, false
	}
	return true, age > cookieRenew
}

// parseCookie reads a COOKIE option's data into q: a client cookie of 8
// bytes, then a server cookie of 8 to 32 bytes or none. Any other length is
// malformed (RFC 7873 section 5.2.2: FORMERR). A second COOKIE option is
// ignored.
func (q *query) parseCookie(d []byte) bool {
	if n := len(d); n != clientCookieLen && (n < clientCookieLen+8 || n > clientCookieLen+maxServerCookie) {
		return false
	}
	if q.cookie {
		return true
	}
	q.cookie = true
	copy(q.clientCookie[:], d)
	q.serverLen = copy(q.serverCookie[:], d[clientCookieLen:])
	return true
}

// siphash24 is SipHash-2-4 (Aumasson and Bernstein) of m under the key
// (k0, k1), as RFC 9018 uses it.
func siphash24(k0, k1 uint64, m []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	n := len(m)
	for len(m) >= 8 {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= w
		m = m[8:]
	}
	last := uint64(n) << 56
	for i, b := range m {
		last |= uint64(b) << (8 * i)
	}
	v3 ^= last
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= last
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
