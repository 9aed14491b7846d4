package scrubber

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// challenger issues and checks the under-attack cookie: base64url of an
// 8-byte expiry (Unix seconds) and the first 16 bytes of
// HMAC-SHA256(key, "verge-challenge-v1" | expiry | client address). The
// cookie is bound to the client's address and expires after Challenge.TTL;
// nobody without the key can mint one.
type challenger struct {
	kind   string
	cookie string
	ttl    time.Duration
	key    []byte
	macs   sync.Pool // hash.Hash keyed with key
}

const (
	tokenRaw = 8 + 16
	tokenLen = (tokenRaw*8 + 5) / 6 // base64url, no padding: 32
)

func newChallenger(c Challenge) (*challenger, error) {
	ch := &challenger{kind: c.Kind, cookie: c.Cookie, ttl: c.TTL.D()}
	if c.SecretFile != "" {
		k, err := readSecretFile(c.SecretFile, 32)
		if err != nil {
			return nil, fmt.Errorf("scrubber: attack.challenge.secret_file: %w", err)
		}
		ch.key = k
	} else {
		ch.key = make([]byte, 32)
		if _, err := rand.Read(ch.key); err != nil {
			return nil, fmt.Errorf("scrubber: challenge key: %w", err)
		}
	}
	ch.macs.New = func() any { return hmac.New(sha256.New, ch.key) }
	return ch, nil
}

func (c *challenger) mac(exp uint64, a netip.Addr) [sha256.Size]byte {
	h := c.macs.Get().(hash.Hash)
	h.Reset()
	var buf [18 + 8 + 16]byte
	copy(buf[:], "verge-challenge-v1")
	binary.BigEndian.PutUint64(buf[18:], exp)
	a16 := a.Unmap().As16()
	copy(buf[26:], a16[:])
	h.Write(buf[:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	c.macs.Put(h)
	return sum
}

// mint returns a token for a that expires at exp.
func (c *challenger) mint(a netip.Addr, exp time.Time) string {
	var raw [tokenRaw]byte
	e := uint64(exp.Unix())
	binary.BigEndian.PutUint64(raw[:8], e)
	m := c.mac(e, a)
	copy(raw[8:], m[:16])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// verify reports whether tok is a live token for a.
func (c *challenger) verify(tok string, a netip.Addr, now time.Time) bool {
	if len(tok) != tokenLen {
		return false
	}
	var src [tokenLen]byte
	copy(src[:], tok)
	var raw [tokenRaw]byte
	if n, err := base64.RawURLEncoding.Decode(raw[:], src[:]); err != nil || n != tokenRaw {
		return false
	}
	e := binary.BigEndian.Uint64(raw[:8])
	if int64(e) < now.Unix() || int64(e) > now.Add(c.ttl+time.Minute).Unix() {
		return false
	}
	m := c.mac(e, a)
	return hmac.Equal(m[:16], raw[8:])
}

// cookieValue finds name's value in r's Cookie headers without allocating.
func cookieValue(r *http.Request, name string) string {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				return strings.Trim(part[len(name)+1:], `"`)
			}
		}
	}
	return ""
}

// challengeHandler is the request stage: under attack, a request without a
// valid cookie gets the challenge instead of the content.
type challengeHandler struct {
	s    *Scrubber
	c    *challenger
	next http.Handler
}

var challengeOther = []byte("403 this site is under attack: open it in a browser first, then retry\n")

func (h *challengeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.s.UnderAttack() {
		h.next.ServeHTTP(w, r)
		return
	}
	a, ok := remoteAddr(r.RemoteAddr)
	if !ok {
		h.next.ServeHTTP(w, r)
		return
	}
	now := h.s.clock()
	if tok := cookieValue(r, h.c.cookie); tok != "" && h.c.verify(tok, a, now) {
		h.s.m.challengeOK.Inc()
		h.next.ServeHTTP(w, r)
		return
	}
	h.s.m.challenged.Inc()
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		w.Write(challengeOther)
		return
	}
	tok := h.c.mint(a, now.Add(h.c.ttl))
	maxAge := strconv.Itoa(int(h.c.ttl / time.Second))
	secure := ""
	if r.TLS != nil {
		secure = "; Secure"
	}
	if h.c.kind == ChallengeRedirect {
		hd.Set("Set-Cookie", h.c.cookie+"="+tok+"; Path=/; Max-Age="+maxAge+"; HttpOnly; SameSite=Lax"+secure)
		hd.Set("Location", r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	pair := h.c.cookie + "=" + tok
	fmt.Fprintf(w, challengePage, pair, maxAge, secure, pair)
}

// challengePage sets the cookie from script and reloads; without cookies it
// says so instead of reloading forever. Arguments: name=token, max-age,
// secure flag, name=token. The values are base64url and a validated cookie
// name, so they need no escaping.
const challengePage = `<!doctype html>
<html><head><meta charset="utf-8"><meta name="robots" content="noindex"><title>One moment</title></head>
<body><p id="m">This site is under heavy load. Checking your browser&hellip;</p>
<script>(function(){document.cookie="%s; Path=/; Max-Age=%s; SameSite=Lax%s";
if(document.cookie.indexOf("%s")>=0){location.reload();}
else{document.getElementById("m").textContent="This site needs cookies enabled while it is under attack.";}})();</script>
<noscript><p>Enable JavaScript and cookies, then reload this page.</p></noscript>
</body></html>
`
