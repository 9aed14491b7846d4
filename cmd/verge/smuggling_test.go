package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// The smuggling corpus: requests whose framing is ambiguous, sent as raw
// bytes to a tier, with a recording origin behind it. A vector's legitimate
// request targets V/ok (V is the vector's own path prefix); anything it
// tries to smuggle targets V/smuggled; each payload ends with a V/end
// request with "Connection: close" so the tier closes the connection once it
// has read everything. The figure is how many requests reached the origin
// beyond the ones the client sent openly (any V/smuggled request, or more
// V/ok requests than the vector holds), and how many reached it in a form a
// strict parser objects to (a less strict origin might frame them otherwise).

const smuggleHost = "smuggle.test"

// h1Vector is an HTTP/1 attack: build returns the bytes for path prefix v
// and host h; legit is how many requests in it may reach the origin.
type h1Vector struct {
	name  string
	legit int
	build func(v, h string) string
}

// smuggled is the request a vector hides.
func smuggled(v, h string) string {
	return "GET " + v + "/smuggled HTTP/1.1\r\nHost: " + h + "\r\n\r\n"
}

// post is a POST to v/ok with the given field lines (each with its CRLF)
// and body.
func post(v, h, fields, body string) string {
	return "POST " + v + "/ok HTTP/1.1\r\nHost: " + h + "\r\n" + fields + "\r\n" + body
}

// clte hides the smuggled request after an empty chunked body, with a
// Content-Length that covers it: a tier honouring Transfer-Encoding sees
// two requests, one honouring Content-Length sees one.
func clte(te string) func(v, h string) string {
	return func(v, h string) string {
		body := "0\r\n\r\n" + smuggled(v, h)
		return post(v, h, "Content-Length: "+strconv.Itoa(len(body))+"\r\n"+te, body)
	}
}

// tecl hides the smuggled request inside a chunk, with a Content-Length of
// 4: a tier honouring Content-Length sees the chunk's content as the next
// request.
func tecl(te string) func(v, h string) string {
	return func(v, h string) string {
		s := smuggled(v, h)
		body := strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n0\r\n\r\n"
		return post(v, h, "Content-Length: 4\r\n"+te, body)
	}
}

// teObfuscations are Transfer-Encoding fields that parsers disagree on.
var teObfuscations = []struct{ name, field string }{
	{"plain", "Transfer-Encoding: chunked\r\n"},
	{"xchunked", "Transfer-Encoding: xchunked\r\n"},
	{"space before colon", "Transfer-Encoding : chunked\r\n"},
	{"duplicate field", "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n"},
	{"tab", "Transfer-Encoding:\tchunked\r\n"},
	{"obs-fold", "X-Folded: y\r\n Transfer-Encoding: chunked\r\n"},
	{"name on its own line", "Transfer-Encoding\r\n : chunked\r\n"},
	{"chunked, identity", "Transfer-Encoding: chunked, identity\r\n"},
	{"identity, chunked", "Transfer-Encoding: identity, chunked\r\n"},
	{"upper case", "Transfer-Encoding: CHUNKED\r\n"},
	{"quoted", "Transfer-Encoding: \"chunked\"\r\n"},
	{"underscore", "Transfer_Encoding: chunked\r\n"},
	{"NUL after", "Transfer-Encoding: chunked\x00\r\n"},
	{"vertical tab", "Transfer-Encoding: \x0bchunked\r\n"},
	{"bare LF before", "X-A: a\nTransfer-Encoding: chunked\r\n"},
	{"CR before CRLF", "Transfer-Encoding: chunked\r\r\n"},
	{"gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"},
	{"chunk", "Transfer-Encoding: chunk\r\n"},
}

// h1Corpus is the HTTP/1 corpus.
func h1Corpus() []h1Vector {
	var vs []h1Vector
	for _, o := range teObfuscations {
		vs = append(vs,
			h1Vector{"CL.TE, TE " + o.name, 1, clte(o.field)},
			h1Vector{"TE.CL, TE " + o.name, 1, tecl(o.field)})
	}
	clBody := func(cl func(n int) string) func(v, h string) string {
		return func(v, h string) string {
			s := smuggled(v, h)
			return post(v, h, cl(len(s)), s)
		}
	}
	chunked := func(body func(s string) string) func(v, h string) string {
		return func(v, h string) string {
			return post(v, h, "Transfer-Encoding: chunked\r\n", body(smuggled(v, h)))
		}
	}
	withBody := func(method string) func(v, h string) string {
		return func(v, h string) string {
			s := smuggled(v, h)
			return method + " " + v + "/ok HTTP/1.1\r\nHost: " + h + "\r\nContent-Length: " + strconv.Itoa(len(s)) + "\r\n\r\n" + s
		}
	}
	line := func(raw string) func(v, h string) string {
		return func(v, h string) string {
			return strings.NewReplacer("{V}", v, "{H}", h, "{S}", smuggled(v, h)).Replace(raw)
		}
	}
	vs = append(vs, []h1Vector{
		// Content-Length
		{"CL.CL: 0 then the length", 1, clBody(func(n int) string { return "Content-Length: 0\r\nContent-Length: " + strconv.Itoa(n) + "\r\n" })},
		{"CL.CL: the length then 0", 1, clBody(func(n int) string { return "Content-Length: " + strconv.Itoa(n) + "\r\nContent-Length: 0\r\n" })},
		{"CL list N, 0", 1, clBody(func(n int) string { return "Content-Length: " + strconv.Itoa(n) + ", 0\r\n" })},
		{"CL with a plus sign", 1, clBody(func(n int) string { return "Content-Length: +" + strconv.Itoa(n) + "\r\n" })},
		{"CL in hex", 1, clBody(func(n int) string { return "Content-Length: 0x" + strconv.FormatInt(int64(n), 16) + "\r\n" })},
		{"CL negative", 1, clBody(func(int) string { return "Content-Length: -1\r\n" })},
		{"CL overflowing int64", 1, clBody(func(int) string { return "Content-Length: 99999999999999999999\r\n" })},
		{"CL with a space inside", 1, clBody(func(n int) string { return "Content-Length: 1 " + strconv.Itoa(n) + "\r\n" })},
		{"CL.0: GET with a body", 1, withBody("GET")},
		{"CL.0: HEAD with a body", 1, withBody("HEAD")},
		{"CL.0: OPTIONS with a body", 1, withBody("OPTIONS")},
		{"CL.0: GET with a body, passed through (no-store)", 1, func(v, h string) string {
			s := smuggled(v, h)
			return "GET " + v + "/ok HTTP/1.1\r\nHost: " + h + "\r\nCache-Control: no-store\r\nContent-Length: " + strconv.Itoa(len(s)) + "\r\n\r\n" + s
		}},
		// chunk sizes and endings
		{"chunk size overflowing 64 bits", 1, chunked(func(s string) string { return "1ffffffffffffffff\r\n" + s + "\r\n0\r\n\r\n" })},
		{"chunk size negative", 1, chunked(func(s string) string { return "-1\r\n" + s + "0\r\n\r\n" })},
		{"chunk size with 0x", 1, chunked(func(s string) string {
			return "0x" + strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n0\r\n\r\n"
		})},
		{"chunk size with a leading space", 1, chunked(func(s string) string { return " 5\r\nhello\r\n0\r\n\r\n" + s })},
		{"chunk size with a trailing space", 1, chunked(func(s string) string { return "5 \r\nhello\r\n0\r\n\r\n" + s })},
		{"chunk extension with a quoted CRLF", 1, chunked(func(s string) string { return "5;x=\"\r\n\"\r\nhello\r\n0\r\n\r\n" + s })},
		{"chunk size ended by a bare LF", 1, chunked(func(s string) string { return "5\nhello\r\n0\r\n\r\n" + s })},
		{"chunk data ended by a bare LF", 1, chunked(func(s string) string { return "5\r\nhello\n0\r\n\r\n" + s })},
		{"chunk data ended by other bytes", 1, chunked(func(s string) string { return "5\r\nhelloXX0\r\n\r\n" + s })},
		{"chunk data longer than its size", 1, chunked(func(s string) string { return "2\r\nhello\r\n0\r\n\r\n" + s })},
		{"last chunk without the final CRLF", 1, chunked(func(s string) string { return "0\r\n" + s })},
		{"trailer with framing fields", 1, chunked(func(s string) string {
			return "0\r\nContent-Length: " + strconv.Itoa(len(s)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + s
		})},
		// line endings and control characters
		{"bare LF line ends", 1, line("GET {V}/ok HTTP/1.1\nHost: {H}\n\n")},
		{"bare CR between fields", 1, line("GET {V}/ok HTTP/1.1\rHost: {H}\r\n\r\n")},
		{"bare CR inside a value", 1, line("POST {V}/ok HTTP/1.1\r\nHost: {H}\r\nX-A: a\rTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{S}")},
		{"NUL in a value", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\nX-A: a\x00b\r\n\r\n")},
		{"NUL in a name", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\nX-\x00A: b\r\n\r\n")},
		{"field without a colon", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\nbogus\r\n\r\n")},
		{"space in a field name", 1, line("POST {V}/ok HTTP/1.1\r\nHost: {H}\r\nContent Length: 5\r\n\r\n{S}")},
		{"two Host fields", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\nHost: other.test\r\n\r\n")},
		{"no Host in HTTP/1.1", 0, line("GET {V}/ok HTTP/1.1\r\nX-A: b\r\n\r\n")},
		// request lines
		{"HTTP/0.9 simple request", 0, line("GET {V}/smuggled\r\n\r\n")},
		{"HTTP/0.9 version", 0, line("GET {V}/ok HTTP/0.9\r\nHost: {H}\r\n\r\n")},
		{"HTTP/2.0 in an HTTP/1 line", 0, line("GET {V}/ok HTTP/2.0\r\nHost: {H}\r\n\r\n")},
		{"lower-case version", 0, line("GET {V}/ok http/1.1\r\nHost: {H}\r\n\r\n")},
		{"version 1.10", 0, line("GET {V}/ok HTTP/1.10\r\nHost: {H}\r\n\r\n")},
		{"two spaces in the request line", 1, line("GET  {V}/ok HTTP/1.1\r\nHost: {H}\r\n\r\n")},
		{"tab in the request line", 1, line("GET\t{V}/ok HTTP/1.1\r\nHost: {H}\r\n\r\n")},
		{"space inside the target", 1, line("GET {V}/ok {V}/smuggled HTTP/1.1\r\nHost: {H}\r\n\r\n")},
		{"NUL in the method", 0, line("G\x00ET {V}/ok HTTP/1.1\r\nHost: {H}\r\n\r\n")},
		// over-long heads
		{"request line over 64 KiB", 0, line("GET {V}/ok?" + strings.Repeat("a", 70<<10) + " HTTP/1.1\r\nHost: {H}\r\n\r\n{S}")},
		{"field over 8 KiB", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\nX-Long: " + strings.Repeat("a", 9<<10) + "\r\n\r\n{S}")},
		{"head over 32 KiB", 0, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\n" + strings.Repeat("X-Many: "+strings.Repeat("a", 4000)+"\r\n", 10) + "\r\n{S}")},
		{"200 fields", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\n" + strings.Repeat("X-F: a\r\n", 200) + "\r\n{S}")},
		// pipelining and connection tricks
		{"two pipelined requests", 2, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\n\r\nGET {V}/ok HTTP/1.1\r\nHost: {H}\r\n\r\n")},
		{"request after Connection: close", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\nConnection: close\r\n\r\n{S}")},
		{"HTTP/1.0 without keep-alive, then a request", 1, line("GET {V}/ok HTTP/1.0\r\nHost: {H}\r\n\r\n{S}")},
		{"HTTP/1.0 keep-alive pipelined", 2, line("GET {V}/ok HTTP/1.0\r\nHost: {H}\r\nConnection: keep-alive\r\n\r\nGET {V}/ok HTTP/1.0\r\nHost: {H}\r\n\r\n")},
		{"Expect: 100-continue with the request as body", 1, func(v, h string) string {
			s := smuggled(v, h)
			return post(v, h, "Expect: 100-continue\r\nContent-Length: "+strconv.Itoa(len(s))+"\r\n", s)
		}},
		{"Upgrade: h2c, then a preface", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{S}")},
		{"Upgrade: websocket, then a request", 1, line("GET {V}/ok HTTP/1.1\r\nHost: {H}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n{S}")},
		{"hop-by-hop Content-Length via Connection", 1, func(v, h string) string {
			s := smuggled(v, h)
			return post(v, h, "Connection: Content-Length\r\nContent-Length: "+strconv.Itoa(len(s))+"\r\n", s)
		}},
		{"hop-by-hop Transfer-Encoding via Connection", 1, func(v, h string) string {
			s := smuggled(v, h)
			return post(v, h, "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n", strconv.FormatInt(int64(len(s)), 16)+"\r\n"+s+"\r\n0\r\n\r\n")
		}},
		{"CONNECT, then a request", 0, line("CONNECT {H}:80 HTTP/1.1\r\nHost: {H}:80\r\n\r\n{S}")},
		{"OPTIONS *, then a request", 1, line("OPTIONS * HTTP/1.1\r\nHost: {H}\r\n\r\n{S}")},
		{"GET *, then a request", 1, line("GET * HTTP/1.1\r\nHost: {H}\r\n\r\n{S}")},
	}...)
	return vs
}

var (
	// vectorRe finds a vector's path prefix in a request target.
	vectorRe = regexp.MustCompile(`/(h[12]-\d+)/`)
	// hiddenRe matches the target of a vector's hidden request.
	hiddenRe = regexp.MustCompile(`^(https?://[^/]+)?/h[12]-\d+/smuggled`)
)

// smuggleFigure counts what reached the origin.
type smuggleFigure struct {
	vectors   int
	extra     int // requests the tier did not send as requests of their own
	ambiguous int // requests a strict parser objects to, or that Go frames otherwise
	pipelined int // hidden requests the tier itself took for requests (and answered)
}

// judge counts the extra and the ambiguous requests at the origin. The
// origin answers every request with "Connection: close", so a tier sends
// one request per connection: any further request the origin frames on a
// connection was hidden inside the one the tier sent, a smuggled request.
// A hidden request that the tier itself parsed as the client's next
// request (it answers it, applies its rules, and sends it upstream on a
// connection of its own) is not smuggled: it is counted apart. A vector
// whose open requests arrive more often than it holds them (legit[id]) was
// replayed: extra too.
func judge(o *recOrigin, legit map[string]int, names map[string]string) (f smuggleFigure, findings []string, notes []string) {
	f.vectors = len(legit)
	seen := map[string]int{}
	for _, r := range o.requests() {
		id := ""
		if m := vectorRe.FindStringSubmatch(r.target); m != nil {
			id = m[1]
		}
		if len(r.problems) > 0 {
			f.ambiguous++
			findings = append(findings, fmt.Sprintf("%s (%s): forwarded in a form a strict origin objects to: %s\n%q", id, names[id], strings.Join(r.problems, "; "), r.raw))
		}
		switch {
		case !r.complete:
			// cut short: never served as a request
		case r.seq > 0:
			f.extra++
			findings = append(findings, fmt.Sprintf("%s (%s): request %d on one upstream connection, hidden in the one before: %q", id, names[id], r.seq+1, r.raw))
		case hiddenRe.MatchString(r.target):
			f.pipelined++
		case strings.HasSuffix(r.target, "/end"):
		case id == "":
			notes = append(notes, fmt.Sprintf("the origin got a target no vector sent as such: %q", r.raw))
		default:
			seen[id]++
		}
	}
	for id, n := range seen {
		if n > legit[id] {
			f.extra += n - legit[id]
			findings = append(findings, fmt.Sprintf("%s (%s): its request reached the origin %d times, it was sent %d", id, names[id], n, legit[id]))
		}
	}
	for _, d := range o.goDisagreements() {
		f.ambiguous++
		findings = append(findings, d)
	}
	return f, findings, notes
}

// endMarker closes a vector's connection once the tier has read it all.
func endMarker(v, h string) string {
	return "GET " + v + "/end HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\n\r\n"
}

// sendH1Corpus sends every HTTP/1 vector to addr and returns what each
// vector may legitimately deliver, and its name, by vector id.
func sendH1Corpus(t *testing.T, addr string) (legit map[string]int, names map[string]string) {
	corpus := h1Corpus()
	if len(corpus) < 40 {
		t.Errorf("the HTTP/1 corpus has %d vectors, want at least 40", len(corpus))
	}
	legit, names = map[string]int{}, map[string]string{}
	for i, vec := range corpus {
		id := fmt.Sprintf("h1-%02d", i+1)
		v := "/" + id
		legit[id], names[id] = vec.legit, vec.name
		out := corpusExchange(t, addr, vec.build(v, smuggleHost)+endMarker(v, smuggleHost))
		if testing.Verbose() {
			t.Logf("%s %-45s answers %v", id, vec.name, corpusStatuses(out))
		}
	}
	return legit, names
}

// runH1Corpus sends every HTTP/1 vector to addr and judges what reached o
// once stop has shut the tiers down.
func runH1Corpus(t *testing.T, where, addr string, o *recOrigin, stop func()) {
	conflict := corpusStatuses(corpusExchange(t, addr, clte("Transfer-Encoding: chunked\r\n")("/h1-00", smuggleHost)))
	legit, names := sendH1Corpus(t, addr)
	legit["h1-00"], names["h1-00"] = 1, "CL.TE, asking how many requests the tier answers"
	stop()
	o.waitIdle(t)
	f, findings, notes := judge(o, legit, names)
	for _, s := range findings {
		t.Error(s)
	}
	for _, s := range notes {
		t.Log(s)
	}
	t.Logf("smuggling (HTTP/1 via %s): %d vectors, %d reached the origin as an extra request, %d forwarded ambiguously "+
		"(%d hidden requests were parsed by the tier as the client's next request, answered and forwarded as such)",
		where, f.vectors, f.extra, f.ambiguous, f.pipelined)
	note := ""
	if len(conflict) > 1 {
		note = ": the connection stayed open; Go's server does not close it, golang/go#80942"
	}
	t.Logf("after a request with both Content-Length and Transfer-Encoding the tier answered %d request(s) on the connection "+
		"(RFC 9112 section 6.1 wants the connection closed after the first)%s", len(conflict), note)
}

// TestSmugglingCorpusDetects runs the HTTP/1 corpus against a proxy that
// frames requests by Content-Length alone and forwards their bytes as they
// are: the judge must find the requests it smuggles, or the figures above
// would prove nothing.
func TestSmugglingCorpusDetects(t *testing.T) {
	o := startRecOrigin(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				naiveProxy(c, o.host)
			}()
		}
	}()
	legit, names := sendH1Corpus(t, ln.Addr().String())
	ln.Close()
	wg.Wait()
	o.waitIdle(t)
	f, findings, _ := judge(o, legit, names)
	t.Logf("a Content-Length-only proxy: %d vectors, %d reached the origin as an extra request, %d forwarded ambiguously", f.vectors, f.extra, f.ambiguous)
	if f.extra == 0 || f.ambiguous == 0 {
		t.Errorf("the judge found nothing wrong with a naive proxy:\n%s", strings.Join(findings, "\n"))
	}
}

// naiveProxy reads request heads up to a blank line, takes the first
// Content-Length for the body, ignores everything else, and forwards each
// request's bytes unchanged on a new connection to origin.
func naiveProxy(c net.Conn, origin string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(corpusGuard))
	br := bufio.NewReader(c)
	for {
		var head []byte
		n := 0
		for {
			line, err := br.ReadSlice('\n')
			head = append(head, line...)
			if err != nil {
				return
			}
			l := strings.TrimRight(string(line), "\r\n")
			if l == "" {
				break
			}
			if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "content-length") && n == 0 {
				if x, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && x > 0 && x < 1<<20 {
					n = x
				}
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		up, err := net.Dial("tcp", origin)
		if err != nil {
			return
		}
		up.SetDeadline(time.Now().Add(corpusGuard))
		up.Write(append(head, body...))
		up.(*net.TCPConn).CloseWrite() // one request per connection, as the origin wants
		resp, err := io.ReadAll(up)
		up.Close()
		if err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// cacheYAML is an edge or hub config serving smuggleHost from origin
// (through upstream when set) with an HTTPS listener from ca.
func cacheYAML(name, origin, upstream string, ca *corpusCA) string {
	up := ""
	if upstream != "" {
		up = "upstream: " + upstream + "\n"
	}
	return fmt.Sprintf(`node: {name: %s}
listen: {http: "127.0.0.1:0", https: "127.0.0.1:0", admin: "127.0.0.1:0", http3: false}
%sproperties:
  - name: corpus
    hosts: [%s]
    origin: %s
    tls: %s
`, name, up, smuggleHost, origin, ca.tlsYAML())
}

// corpusChain is edge -> hub -> recording origin, all on loopback.
type corpusChain struct {
	origin                     *recOrigin
	ca                         *corpusCA
	edge, hub                  *corpusNode
	edgeHTTP, edgeTLS, hubHTTP string
	hubTLS                     string
}

func startCorpusChain(t *testing.T) *corpusChain {
	t.Helper()
	c := &corpusChain{origin: startRecOrigin(t), ca: newCorpusCA(t, smuggleHost)}
	c.hub = startCorpusCmd(t, runHub, cacheYAML("hub-1", c.origin.url(), "", c.ca))
	c.hubHTTP, c.hubTLS = c.hub.addr(t, "public"), c.hub.addr(t, "https")
	c.edge = startCorpusCmd(t, runEdge, cacheYAML("edge-1", c.origin.url(), "http://"+c.hubHTTP, c.ca))
	c.edgeHTTP, c.edgeTLS = c.edge.addr(t, "public"), c.edge.addr(t, "https")
	return c
}

func (c *corpusChain) stop(t *testing.T) {
	c.edge.stop(t)
	c.hub.stop(t)
}

func TestSmugglingHTTP1(t *testing.T) {
	t.Run("edge", func(t *testing.T) {
		c := startCorpusChain(t)
		runH1Corpus(t, "edge -> hub -> origin", c.edgeHTTP, c.origin, func() { c.stop(t) })
	})
	t.Run("hub", func(t *testing.T) {
		c := startCorpusChain(t)
		runH1Corpus(t, "hub -> origin", c.hubHTTP, c.origin, func() { c.stop(t) })
	})
	for _, server := range []string{"fast", "stdlib"} {
		t.Run("scrubber "+server, func(t *testing.T) {
			o := startRecOrigin(t)
			s := startCorpusCmd(t, runScrubber, fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
server: %s
upstream:
  backends: [{url: %s}]
  health: {enabled: false}
limits:
  per_ip: {rate: 100000, burst: 100000}
  per_prefix: {rate: 100000, burst: 100000}
attack: {enabled: false}
lists: {allow: []}
`, server, o.url()))
			runH1Corpus(t, "scrubber (server: "+server+") -> origin", s.addr(t, "public"), o, func() { s.stop(t) })
		})
	}
}

// h2Vector is an HTTP/2-to-HTTP/1 attack: send writes its frames on c for
// path prefix v, ending (or letting the server end) every stream it opens.
type h2Vector struct {
	name  string
	legit int
	send  func(c *corpusH2, v string)
}

// h2Req is a request's header list: the four pseudo-header fields, then
// extra (name, value) pairs as given.
func h2Req(method, path string, extra ...string) [][2]string {
	f := [][2]string{{":method", method}, {":scheme", "https"}, {":authority", smuggleHost}, {":path", path}}
	for i := 0; i+1 < len(extra); i += 2 {
		f = append(f, [2]string{extra[i], extra[i+1]})
	}
	return f
}

// h2Body opens a stream with fields and sends body in one DATA frame that
// ends it.
func h2Body(fields [][2]string, body string) func(c *corpusH2, v string) {
	return func(c *corpusH2, v string) {
		id := c.open(false, fields...)
		c.fr.WriteData(id, true, []byte(body))
	}
}

// h2Corpus is the HTTP/2 corpus.
func h2Corpus() []h2Vector {
	s := func(v string) string { return smuggled(v, smuggleHost) }
	return []h2Vector{
		{"content-length shorter than the DATA", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "content-length", "5"), "hello"+s(v))(c, v)
		}},
		{"content-length longer than the DATA", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "content-length", "500"), "hello")(c, v)
		}},
		{"content-length 0 with DATA", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "content-length", "0"), s(v))(c, v)
		}},
		{"two content-length fields", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "content-length", "0", "content-length", strconv.Itoa(len(s(v)))), s(v))(c, v)
		}},
		{"content-length list", 1, func(c *corpusH2, v string) {
			n := strconv.Itoa(len(s(v)))
			h2Body(h2Req("POST", v+"/ok", "content-length", n+", 0"), s(v))(c, v)
		}},
		{"GET with content-length and DATA", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("GET", v+"/ok", "content-length", strconv.Itoa(len(s(v)))), s(v))(c, v)
		}},
		{"GET with DATA, no content-length, no-store", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("GET", v+"/ok", "cache-control", "no-store"), s(v))(c, v)
		}},
		{"transfer-encoding: chunked (H2.TE)", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "transfer-encoding", "chunked"), "0\r\n\r\n"+s(v))(c, v)
		}},
		{"CRLF in a value: a request after it", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", v+"/ok", "x-a", "a\r\n\r\n"+strings.TrimSuffix(s(v), "\r\n"))...)
		}},
		{"CRLF in a value: Transfer-Encoding", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "x-a", "a\r\nTransfer-Encoding: chunked"), "0\r\n\r\n"+s(v))(c, v)
		}},
		{"LF in a value", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "x-a", "a\nContent-Length: 0"), s(v))(c, v)
		}},
		{"NUL in a value", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", v+"/ok", "x-a", "a\x00b")...)
		}},
		{"CRLF in a field name", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "x-a\r\ntransfer-encoding", "chunked"), "0\r\n\r\n"+s(v))(c, v)
		}},
		{"colon in a field name", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "transfer-encoding:chunked", "x"), "0\r\n\r\n"+s(v))(c, v)
		}},
		{"space in a field name", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "transfer-encoding ", "chunked"), "0\r\n\r\n"+s(v))(c, v)
		}},
		{"upper-case field name", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "Transfer-Encoding", "chunked"), "0\r\n\r\n"+s(v))(c, v)
		}},
		{":path with CRLF and a request", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", v+"/ok HTTP/1.1\r\nHost: "+smuggleHost+"\r\n\r\nGET "+v+"/smuggled HTTP/1.1\r\nX-A: a")...)
		}},
		{":path with a space", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", v+"/ok "+v+"/smuggled")...)
		}},
		{":path as an absolute URI to another host", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", "http://other.test"+v+"/smuggled")...)
		}},
		{":path without a leading slash", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", strings.TrimPrefix(v, "/")+"/smuggled")...)
		}},
		{":method with CRLF and a request", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET "+v+"/smuggled HTTP/1.1\r\nHost: "+smuggleHost+"\r\n\r\nGET", v+"/ok")...)
		}},
		{":method with a space", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET "+v+"/smuggled", v+"/ok")...)
		}},
		{":authority differs from host", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", v+"/ok", "host", "other.test")...)
		}},
		{"host names the site, :authority another", 0, func(c *corpusH2, v string) {
			f := h2Req("GET", v+"/ok", "host", smuggleHost)
			f[2][1] = "other.test"
			c.open(true, f...)
		}},
		{":authority with CRLF", 0, func(c *corpusH2, v string) {
			f := h2Req("GET", v+"/ok")
			f[2][1] = smuggleHost + "\r\nX-Injected: 1"
			c.open(true, f...)
		}},
		{":authority with userinfo", 1, func(c *corpusH2, v string) {
			f := h2Req("GET", v+"/ok")
			f[2][1] = "attacker@" + smuggleHost
			c.open(true, f...)
		}},
		{"two :path fields", 1, func(c *corpusH2, v string) {
			c.open(true, append(h2Req("GET", v+"/ok"), [2]string{":path", v + "/smuggled"})...)
		}},
		{"pseudo-header after a regular field", 1, func(c *corpusH2, v string) {
			f := [][2]string{{":method", "GET"}, {":scheme", "https"}, {"x-a", "b"}, {":authority", smuggleHost}, {":path", v + "/ok"}}
			c.open(true, f...)
		}},
		{"unknown pseudo-header", 1, func(c *corpusH2, v string) {
			c.open(true, append(h2Req("GET", v+"/ok"), [2]string{":smuggle", v + "/smuggled"})...)
		}},
		{":scheme holding a URL", 1, func(c *corpusH2, v string) {
			f := h2Req("GET", v+"/ok")
			f[1][1] = "http://other.test/x?"
			c.open(true, f...)
		}},
		{"connection-specific fields", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", v+"/ok", "connection", "keep-alive", "keep-alive", "timeout=5", "proxy-connection", "keep-alive")...)
		}},
		{"upgrade: h2c", 1, func(c *corpusH2, v string) {
			c.open(true, h2Req("GET", v+"/ok", "upgrade", "h2c", "http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")...)
		}},
		{"te other than trailers", 1, func(c *corpusH2, v string) {
			h2Body(h2Req("POST", v+"/ok", "te", "trailers, chunked"), "0\r\n\r\n"+s(v))(c, v)
		}},
		{"trailers with framing fields", 1, func(c *corpusH2, v string) {
			id := c.open(false, h2Req("POST", v+"/ok", "trailer", "transfer-encoding")...)
			c.fr.WriteData(id, false, []byte("0\r\n\r\n"+s(v)))
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
				BlockFragment: c.block([2]string{"transfer-encoding", "chunked"}, [2]string{"content-length", "0"})})
		}},
		{"trailer with CRLF", 1, func(c *corpusH2, v string) {
			id := c.open(false, h2Req("POST", v+"/ok", "trailer", "x-t")...)
			c.fr.WriteData(id, false, []byte("body"))
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
				BlockFragment: c.block([2]string{"x-t", "a\r\n\r\n" + strings.TrimSuffix(s(v), "\r\n")})})
		}},
		{"pseudo-header in trailers", 1, func(c *corpusH2, v string) {
			id := c.open(false, h2Req("POST", v+"/ok")...)
			c.fr.WriteData(id, false, []byte("body"))
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true,
				BlockFragment: c.block([2]string{":path", v + "/smuggled"})})
		}},
	}
}

// runH2Corpus sends every HTTP/2 vector to the TLS listener at addr and
// judges what reached o once stop has shut the tiers down.
func runH2Corpus(t *testing.T, where, addr string, ca *corpusCA, o *recOrigin, stop func()) {
	corpus := h2Corpus()
	legit, names := map[string]int{}, map[string]string{}
	for i, vec := range corpus {
		id := fmt.Sprintf("h2-%02d", i+1)
		v := "/" + id
		legit[id], names[id] = vec.legit, vec.name
		c := dialCorpusH2(t, addr, smuggleHost, ca.pool)
		vec.send(c, v)
		c.open(true, h2Req("GET", v+"/end")...)
		c.run()
		if testing.Verbose() {
			t.Logf("%s %-45s %s", id, vec.name, c.outcome())
		}
	}
	stop()
	o.waitIdle(t)
	f, findings, notes := judge(o, legit, names)
	for _, s := range findings {
		t.Error(s)
	}
	for _, s := range notes {
		t.Log(s)
	}
	t.Logf("smuggling (HTTP/2 via %s): %d vectors, %d reached the origin as an extra request, %d forwarded ambiguously "+
		"(%d hidden requests were parsed by the tier as a request of their own)",
		where, f.vectors, f.extra, f.ambiguous, f.pipelined)
	if len(corpus) < 15 {
		t.Errorf("the HTTP/2 corpus has %d vectors, want at least 15", len(corpus))
	}
}

func TestSmugglingHTTP2(t *testing.T) {
	t.Run("edge", func(t *testing.T) {
		c := startCorpusChain(t)
		runH2Corpus(t, "edge -> hub -> origin", c.edgeTLS, c.ca, c.origin, func() { c.stop(t) })
	})
	t.Run("hub", func(t *testing.T) {
		c := startCorpusChain(t)
		runH2Corpus(t, "hub -> origin", c.hubTLS, c.ca, c.origin, func() { c.stop(t) })
	})
}
