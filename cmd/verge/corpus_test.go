package main

// The attack corpora (smuggling, poisoning, abuse) share the pieces in this
// file: a recording origin that keeps every byte it receives and frames it
// with a strict HTTP/1.1 parser, real "verge edge", "verge hub" and "verge
// scrubber" processes' code started in-process from config files, and raw
// HTTP/1 and HTTP/2 clients that send bytes exactly as written.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	listenpkg "github.com/vergecdn/verge/edge/listen"
)

// corpusGuard bounds every wait in the corpora. No figure depends on it: it
// only turns a hang (itself a bug) into a failure instead of a stuck test.
const corpusGuard = 30 * time.Second

// recRequest is one request as the recording origin framed it.
type recRequest struct {
	conn, seq     int
	method        string
	target, proto string
	header        http.Header
	body          []byte
	raw           []byte
	complete      bool     // head and body arrived whole
	problems      []string // what a strict HTTP/1.1 parser objects to
}

func (r *recRequest) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// recOrigin is an HTTP/1.1 origin on raw TCP that records every request it
// receives and frames the byte stream strictly (RFC 9112 with none of its
// leniencies): CRLF line ends only, no obs-fold, token names, no control
// characters, one Host, at most one Content-Length, Transfer-Encoding only
// "chunked" and never with Content-Length, chunk sizes in plain hex, no body
// on GET or HEAD. Anything else a tier forwards is a "problem": a backend
// less strict than this one could frame it differently.
//
// Every response carries "Connection: close", but the origin keeps reading
// and framing what follows on the connection: bytes a keep-alive origin would
// have taken for the next request are recorded as requests too. Since every
// connection ends after one exchange, the origin knows when a tier has no
// more requests in flight: when its connections are all closed.
type recOrigin struct {
	ln   net.Listener
	host string // base URL's host:port
	// reply, when set, chooses the response; default 200 "origin: METHOD TARGET".
	reply func(r *recRequest) (status int, header string, body string)

	mu      sync.Mutex // guards reqs, streams, open, nconn, live, idling
	reqs    []*recRequest
	streams map[int]*bytes.Buffer // every byte received, per connection
	open    int
	nconn   int
	live    map[int]net.Conn // connections not yet ended
	idling  bool             // waitIdle has begun: new connections get its short deadline
	wg      sync.WaitGroup
}

func startRecOrigin(t *testing.T) *recOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &recOrigin{ln: ln, host: ln.Addr().String(), streams: map[int]*bytes.Buffer{}, live: map[int]net.Conn{}}
	go o.accept()
	t.Cleanup(func() { ln.Close() })
	return o
}

func (o *recOrigin) url() string { return "http://" + o.host }

func (o *recOrigin) accept() {
	for {
		c, err := o.ln.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(2 * corpusGuard))
		o.mu.Lock()
		if o.idling {
			// A transport's dial that completed after its tier stopped.
			c.SetReadDeadline(time.Now().Add(time.Second))
		}
		o.nconn++
		id := o.nconn
		o.open++
		o.live[id] = c
		buf := &bytes.Buffer{}
		o.streams[id] = buf
		o.wg.Add(1)
		o.mu.Unlock()
		go o.serve(c, id, buf)
	}
}

// recTee copies what it reads into the connection's stream, under o.mu.
type recTee struct {
	o   *recOrigin
	r   io.Reader
	buf *bytes.Buffer
}

func (t *recTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.o.mu.Lock()
		t.buf.Write(p[:n])
		t.o.mu.Unlock()
	}
	return n, err
}

func (o *recOrigin) serve(c net.Conn, id int, stream *bytes.Buffer) {
	defer func() {
		c.Close()
		o.mu.Lock()
		o.open--
		delete(o.live, id)
		o.mu.Unlock()
		o.wg.Done()
	}()
	br := bufio.NewReaderSize(&recTee{o: o, r: c, buf: stream}, 64<<10)
	answered := false
	for seq := 0; ; seq++ {
		req, fatal := readStrict(br, func() {
			if !answered {
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			}
		})
		if req == nil {
			return
		}
		req.conn, req.seq = id, seq
		o.mu.Lock()
		o.reqs = append(o.reqs, req)
		o.mu.Unlock()
		if !answered && req.complete {
			status, hdr, body := 200, "", "origin: "+req.method+" "+req.target+"\n"
			if o.reply != nil {
				status, hdr, body = o.reply(req)
			}
			fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\n%sContent-Length: %d\r\n\r\n",
				status, http.StatusText(status), hdr, len(body))
			if req.method != http.MethodHead {
				io.WriteString(c, body)
			}
			answered = true
			if tc, ok := c.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
		if fatal || !req.complete {
			// Cannot frame further; the rest of the stream stays recorded
			// for the cross-check with Go's parser.
			io.Copy(io.Discard, br)
			return
		}
	}
}

// waitIdle waits until every connection the origin accepted has ended; the
// tiers in front must have stopped. A connection that has sent nothing yet
// is one a transport opened and kept idle: it gets a second to send
// something (bytes already on their way are read at once), then ends.
func (o *recOrigin) waitIdle(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	o.idling = true
	for id, c := range o.live {
		if o.streams[id].Len() == 0 {
			c.SetReadDeadline(time.Now().Add(time.Second))
		}
	}
	o.mu.Unlock()
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(corpusGuard):
		o.mu.Lock()
		defer o.mu.Unlock()
		var b strings.Builder
		for id := range o.live {
			fmt.Fprintf(&b, "\nconnection %d so far: %q", id, o.streams[id].Bytes())
		}
		t.Fatalf("origin: %d connections still open:%s", o.open, b.String())
	}
}

// requests returns a copy of what the origin has recorded.
func (o *recOrigin) requests() []*recRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*recRequest(nil), o.reqs...)
}

// goDisagreements frames every connection's bytes again with Go's own
// parser (http.ReadRequest) and reports where it sees other requests than
// the strict parser did.
func (o *recOrigin) goDisagreements() []string {
	o.mu.Lock()
	byConn := map[int][]*recRequest{}
	for _, r := range o.reqs {
		if r.complete {
			byConn[r.conn] = append(byConn[r.conn], r)
		}
	}
	streams := map[int][]byte{}
	for id, b := range o.streams {
		streams[id] = bytes.Clone(b.Bytes())
	}
	o.mu.Unlock()
	var out []string
	for id, raw := range streams {
		br := bufio.NewReader(bytes.NewReader(raw))
		var seen []string
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				break
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				break
			}
			seen = append(seen, req.Method+" "+req.RequestURI)
		}
		var strict []string
		for _, r := range byConn[id] {
			strict = append(strict, r.method+" "+r.target)
		}
		if len(seen) > len(strict) || !strictPrefix(seen, strict) {
			out = append(out, fmt.Sprintf("connection %d: Go's parser reads %q, the strict one %q", id, seen, strict))
		}
	}
	return out
}

func strictPrefix(a, b []string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var (
	strictTokenRe  = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
	strictChunkRe  = regexp.MustCompile(`^[0-9a-fA-F]{1,15}$`)
	strictDigitsRe = regexp.MustCompile(`^[0-9]{1,15}$`)
)

// errStrictEnd is readStrict's clean end of a connection.
var errStrictEnd = errors.New("no request")

// readStrict frames one request. It returns nil at a clean end of stream.
// fatal means the stream cannot be framed past this request. cont is called
// after a head that asks for 100-continue.
func readStrict(br *bufio.Reader, cont func()) (req *recRequest, fatal bool) {
	req = &recRequest{header: http.Header{}}
	line, err := readStrictLine(br, req)
	if err == errStrictEnd {
		return nil, true
	}
	if err != nil {
		return req, true
	}
	if line == "" {
		req.problem("empty line before the request line")
		return req, true
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 {
		req.problem("request line %q is not METHOD SP TARGET SP VERSION", line)
		if len(parts) >= 2 {
			req.method, req.target = parts[0], parts[1]
		}
		return req, true
	}
	req.method, req.target, req.proto = parts[0], parts[1], parts[2]
	if !strictTokenRe.MatchString(req.method) {
		req.problem("method %q is not a token", req.method)
	}
	if req.target == "" || strings.ContainsFunc(req.target, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		req.problem("target %q has control characters or spaces", req.target)
	}
	if req.proto != "HTTP/1.1" && req.proto != "HTTP/1.0" {
		req.problem("version %q", req.proto)
		return req, true
	}
	for {
		line, err := readStrictLine(br, req)
		if err != nil {
			return req, true
		}
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			req.problem("obs-fold line %q", line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strictTokenRe.MatchString(name) {
			req.problem("field line %q has no token name and colon", line)
			continue
		}
		value = strings.Trim(value, " \t")
		if strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			req.problem("field %s has control characters: %q", name, value)
		}
		req.header[http.CanonicalHeaderKey(name)] = append(req.header[http.CanonicalHeaderKey(name)], value)
	}
	h := req.header
	if len(h["Host"]) != 1 {
		req.problem("%d Host fields", len(h["Host"]))
	}
	cl, te := h["Content-Length"], h["Transfer-Encoding"]
	if len(cl) > 1 {
		req.problem("%d Content-Length fields", len(cl))
	}
	if len(te) > 1 || len(te) == 1 && !strings.EqualFold(te[0], "chunked") {
		req.problem("Transfer-Encoding %q", te)
	}
	if len(cl) > 0 && len(te) > 0 {
		req.problem("both Content-Length and Transfer-Encoding")
	}
	if (req.method == http.MethodGet || req.method == http.MethodHead) && (len(te) > 0 || len(cl) > 0 && cl[0] != "0") {
		req.problem("a body on %s: an origin that ignores it would read it as the next request", req.method)
	}
	if strings.EqualFold(h.Get("Expect"), "100-continue") {
		cont()
	}
	switch {
	case len(te) > 0:
		if !readStrictChunked(br, req) {
			return req, true
		}
	case len(cl) > 0:
		if !strictDigitsRe.MatchString(cl[0]) {
			req.problem("Content-Length %q", cl[0])
			return req, true
		}
		n, _ := strconv.Atoi(cl[0])
		body := make([]byte, n)
		k, err := io.ReadFull(br, body)
		req.raw = append(req.raw, body[:k]...)
		req.body = body[:k]
		if err != nil {
			return req, true
		}
	}
	req.complete = true
	return req, len(req.problems) > 0
}

// readStrictChunked reads a chunked body; false when it is cut short or
// malformed (a problem is recorded for the latter).
func readStrictChunked(br *bufio.Reader, req *recRequest) bool {
	for {
		line, err := readStrictLine(br, req)
		if err != nil {
			return false
		}
		size, ext, _ := strings.Cut(line, ";")
		if ext != "" || !strictChunkRe.MatchString(size) {
			req.problem("chunk size line %q", line)
			return false
		}
		n, _ := strconv.ParseInt(size, 16, 64)
		if n == 0 {
			break
		}
		data := make([]byte, n+2)
		k, err := io.ReadFull(br, data)
		req.raw = append(req.raw, data[:k]...)
		if err != nil {
			return false
		}
		if string(data[n:]) != "\r\n" {
			req.problem("chunk data not followed by CRLF: %q", data[n:])
			return false
		}
		req.body = append(req.body, data[:n]...)
	}
	for {
		line, err := readStrictLine(br, req)
		if err != nil {
			return false
		}
		if line == "" {
			return true
		}
		name, _, _ := strings.Cut(line, ":")
		switch http.CanonicalHeaderKey(name) {
		case "Content-Length", "Transfer-Encoding", "Host":
			req.problem("trailer field %q", line)
		}
	}
}

// readStrictLine reads one line ending in CRLF; a bare LF or a CR elsewhere
// is a problem. errStrictEnd is a clean end before any byte of a request.
func readStrictLine(br *bufio.Reader, req *recRequest) (string, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > 64<<10 {
			req.raw = append(req.raw, line...)
			req.problem("a line over 64 KiB")
			return "", errors.New("line too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		req.raw = append(req.raw, line...)
		if err != nil {
			if len(req.raw) == 0 {
				return "", errStrictEnd
			}
			return "", err
		}
		break
	}
	s := string(line[:len(line)-1])
	if !strings.HasSuffix(s, "\r") {
		req.problem("line %q ends in a bare LF", s)
	} else {
		s = s[:len(s)-1]
	}
	if strings.ContainsAny(s, "\r\x00") {
		req.problem("line %q holds a CR or NUL", s)
	}
	return s, nil
}

// corpusCA is a local CA with one certificate for the corpora's hosts.
type corpusCA struct {
	dir  string
	pool *x509.CertPool
}

func newCorpusCA(t *testing.T, hosts ...string) *corpusCA {
	t.Helper()
	dir := t.TempDir()
	ca, err := listenpkg.LoadOrCreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), "verge corpus CA")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Issue(filepath.Join(dir, "site.pem"), filepath.Join(dir, "site.key"), hosts...); err != nil {
		t.Fatal(err)
	}
	return &corpusCA{dir: dir, pool: ca.Pool()}
}

// tlsYAML is the tls section of a property using the CA's certificate.
func (c *corpusCA) tlsYAML() string {
	return fmt.Sprintf("{cert_file: %s/site.pem, key_file: %s/site.key}", c.dir, c.dir)
}

// corpusNode is a subcommand's code running in-process from a config file.
type corpusNode struct {
	logs   *lockedBuffer
	exited chan int
	cancel context.CancelFunc
	done   bool
}

// startCorpusCmd runs run with "-config FILE" holding yaml until stop (or the
// test's end).
func startCorpusCmd(t *testing.T, run func(context.Context, env) int, yaml string) *corpusNode {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &corpusNode{logs: &lockedBuffer{}, exited: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.exited <- run(ctx, env{args: []string{"-config", path}, stdout: io.Discard, stderr: n.logs}) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *corpusNode) addr(t *testing.T, server string) string {
	t.Helper()
	return waitListening(t, n.logs, server, n.exited)
}

// stop ends the command and waits for it to drain and exit.
func (n *corpusNode) stop(t *testing.T) {
	t.Helper()
	if n.done {
		return
	}
	n.done = true
	n.cancel()
	select {
	case code := <-n.exited:
		if code != exitOK {
			t.Errorf("command exited %d:\n%s", code, n.logs.String())
		}
	case <-time.After(corpusGuard):
		t.Errorf("command did not exit:\n%s", n.logs.String())
	}
}

// corpusExchange sends payload on a new connection to addr, half-closes it,
// and returns everything the server wrote until it closed.
func corpusExchange(t *testing.T, addr, payload string) []byte {
	t.Helper()
	return corpusSend(t, addr, payload, true)
}

// corpusSend is corpusExchange; halfClose false leaves the write side open
// (the payload then asks for Connection: close). Go's server cancels a
// request's context when the client half-closes, which cuts the response
// to a request still being served.
func corpusSend(t *testing.T, addr, payload string, halfClose bool) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(corpusGuard))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		io.WriteString(c, payload) // the server may close before reading it all
		if halfClose {
			c.(*net.TCPConn).CloseWrite()
		}
	}()
	out, err := io.ReadAll(c)
	<-wrote
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s: no end of the connection after %v (%d bytes read)", addr, corpusGuard, len(out))
	}
	return out
}

// corpusStatuses lists the status codes of the responses in out.
func corpusStatuses(out []byte) []int {
	var codes []int
	br := bufio.NewReader(bytes.NewReader(out))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return codes
		}
		codes = append(codes, resp.StatusCode)
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return codes
		}
	}
}

// corpusH2 is a raw HTTP/2 client over TLS: it writes frames as given,
// header blocks included, and reads until its streams end.
type corpusH2 struct {
	conn    net.Conn
	fr      *http2.Framer
	enc     *hpack.Encoder
	encBuf  bytes.Buffer
	dec     *hpack.Decoder
	streams map[uint32]*corpusStream
	next    uint32
	goaway  *http2.GoAwayFrame
	err     error
}

type corpusStream struct {
	status string
	body   bytes.Buffer
	reset  http2.ErrCode
	ended  bool
}

func dialCorpusH2(t *testing.T, addr, sni string, pool *x509.CertPool) *corpusH2 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q", p)
	}
	conn.SetDeadline(time.Now().Add(corpusGuard))
	c := &corpusH2{conn: conn, fr: http2.NewFramer(conn, conn), streams: map[uint32]*corpusStream{}, next: 1}
	c.enc = hpack.NewEncoder(&c.encBuf)
	c.dec = hpack.NewDecoder(4096, nil)
	io.WriteString(conn, http2.ClientPreface)
	c.fr.WriteSettings()
	return c
}

// block HPACK-encodes fields as they are (names and values unchecked).
func (c *corpusH2) block(fields ...[2]string) []byte {
	c.encBuf.Reset()
	for _, f := range fields {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return bytes.Clone(c.encBuf.Bytes())
}

// open starts a stream with a HEADERS frame carrying fields.
func (c *corpusH2) open(endStream bool, fields ...[2]string) uint32 {
	id := c.next
	c.next += 2
	c.streams[id] = &corpusStream{}
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.block(fields...), EndHeaders: true, EndStream: endStream})
	return id
}

// run reads frames until every stream has ended, or the connection has.
func (c *corpusH2) run() {
	defer c.conn.Close()
	for !c.allEnded() {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.err = err
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			c.goaway = f
			return
		case *http2.HeadersFrame:
			st := c.streams[f.StreamID]
			fields, _ := c.dec.DecodeFull(f.HeaderBlockFragment())
			for _, hf := range fields {
				if hf.Name == ":status" && st != nil && st.status == "" {
					st.status = hf.Value
				}
			}
			if st != nil && f.StreamEnded() {
				st.ended = true
			}
		case *http2.DataFrame:
			if st := c.streams[f.StreamID]; st != nil {
				st.body.Write(f.Data())
				if f.StreamEnded() {
					st.ended = true
				}
			}
			if n := uint32(len(f.Data())); n > 0 {
				c.fr.WriteWindowUpdate(0, n)
				c.fr.WriteWindowUpdate(f.StreamID, n)
			}
		case *http2.RSTStreamFrame:
			if st := c.streams[f.StreamID]; st != nil {
				st.reset, st.ended = f.ErrCode, true
			}
		}
	}
}

func (c *corpusH2) allEnded() bool {
	for _, s := range c.streams {
		if !s.ended {
			return false
		}
	}
	return true
}

// outcome summarises what the server did with each stream, for the logs.
func (c *corpusH2) outcome() string {
	var b strings.Builder
	for id := uint32(1); id < c.next; id += 2 {
		s := c.streams[id]
		switch {
		case s == nil:
		case s.status != "":
			fmt.Fprintf(&b, "stream %d: %s; ", id, s.status)
		case s.reset != 0:
			fmt.Fprintf(&b, "stream %d: RST %v; ", id, s.reset)
		default:
			fmt.Fprintf(&b, "stream %d: no answer; ", id)
		}
	}
	if c.goaway != nil {
		fmt.Fprintf(&b, "GOAWAY %v", c.goaway.ErrCode)
	} else if c.err != nil && !errors.Is(c.err, io.EOF) {
		fmt.Fprintf(&b, "read: %v", c.err)
	}
	return b.String()
}
