package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
)

// The cache poisoning and deception corpus. Behind the tiers runs an
// origin that trusts what web frameworks commonly trust: forwarding
// headers for its host, scheme, port and prefix, URL-rewrite and
// method-override headers, form fields in a GET body; it answers a
// personal page for /account.php followed by any of the delimiters
// frameworks ignore; it varies on X-Variant; it errors on oversized fields.
// Every page is cacheable for 5 minutes unless the case says otherwise.
//
// A poisoning case sends the attacker's requests, then a clean request for
// the page; the clean answer must be exactly what the origin gives a clean
// request. A deception case sends the victim's request (with a session
// cookie), then the attacker's without one; the attacker must not get the
// victim's secret.

const (
	poisonHost   = "www.site.test"
	victimSecret = "victim-secret-4711"
)

// poisonApp is the origin described above.
func poisonApp(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, vs := range r.Header {
		for _, v := range vs {
			if len(k)+len(v) > 4<<10 { // a backend with smaller limits than the CDN
				http.Error(w, "431 field too large", http.StatusRequestHeaderFieldsTooLarge)
				return
			}
		}
	}
	host := r.Host
	for _, f := range []string{"X-Forwarded-Host", "X-Host", "X-Forwarded-Server", "X-Original-Host"} {
		if v := r.Header.Get(f); v != "" {
			host = v
		}
	}
	scheme := "https"
	for _, el := range strings.Split(r.Header.Get("Forwarded"), ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(el), "=")
		switch strings.ToLower(k) {
		case "host":
			host = v
		case "proto":
			scheme = v
		}
	}
	for _, f := range []string{"X-Forwarded-Proto", "X-Forwarded-Scheme"} {
		if v := r.Header.Get(f); v != "" {
			scheme = v
		}
	}
	if strings.EqualFold(r.Header.Get("X-Forwarded-Ssl"), "off") || strings.EqualFold(r.Header.Get("Front-End-Https"), "off") {
		scheme = "http"
	}
	if p := r.Header.Get("X-Forwarded-Port"); p != "" {
		host += ":" + p
	}
	prefix := r.Header.Get("X-Forwarded-Prefix")
	target := r.URL.RequestURI()
	for _, f := range []string{"X-Original-Url", "X-Rewrite-Url"} {
		if v := r.Header.Get(f); v != "" {
			target = v
		}
	}
	method := r.Method
	for _, f := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"} {
		if v := r.Header.Get(f); v != "" {
			method = v
		}
	}
	callback := ""
	if r.Method == http.MethodGet && r.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 4<<10))
		if len(b) > 0 {
			if strings.Contains(r.Header.Get("Content-Type"), "json") && !bytes.HasPrefix(b, []byte("{")) {
				http.Error(w, "400 bad JSON", http.StatusBadRequest)
				return
			}
			q, _ := url.ParseQuery(string(b))
			callback = q.Get("callback")
		}
	}
	if r.Header.Get("Range") != "" {
		h.Set("Content-Range", "bytes */10")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	if r.Header.Get("If-None-Match") == "*" {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if m := accountRe.FindStringSubmatch(r.URL.Path); m != nil {
		switch m[1] {
		case "-cookie":
			h.Set("Set-Cookie", "session=rotated; Path=/")
		case "-private":
			h.Set("Cache-Control", "private")
		case "-lm":
			h.Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		}
		session := "nobody"
		if c, err := r.Cookie("session"); err == nil {
			session = c.Value
		}
		fmt.Fprintf(w, "account page of %s\n", session)
		return
	}
	h.Set("Cache-Control", "public, max-age=300")
	if scheme != "https" {
		h.Set("Location", "https://"+host+prefix+target)
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	switch {
	case strings.Contains(r.URL.Path, "/vary"):
		h.Set("Vary", "X-Variant")
		fmt.Fprintf(w, "variant %q\n", lastValue(r.Header, "X-Variant"))
	case strings.Contains(r.URL.Path, "/maybevary") && r.Header.Get("X-Variant") != "":
		h.Set("Vary", "X-Variant")
		fmt.Fprintf(w, "variant %q\n", r.Header.Get("X-Variant"))
	}
	if method == http.MethodHead {
		return
	}
	h.Set("Link", "<"+scheme+"://"+host+prefix+"/style.css>; rel=preload")
	fmt.Fprintf(w, "page %s of %s (asked for %s as %s://%s%s) callback=%q\n",
		path.Clean(r.URL.Path), method, target, scheme, host, prefix, callback)
}

// lastValue is the last line of a field, as many frameworks read it.
func lastValue(h http.Header, name string) string {
	vs := h.Values(name)
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// accountRe is the personal page, with whatever a framework ignores after it.
var accountRe = regexp.MustCompile(`/account(-cookie|-private|-lm)?\.php([;/#?].*)?$`)

// poisonCase is one attack. Requests are raw HTTP/1.1 with {P} for the
// case's path prefix and {H} for the site's host.
type poisonCase struct {
	name   string
	attack []string // the attacker's requests (deception: the victim's)
	check  string   // the target of the clean request that follows
	// deception: check is the attacker's request; it must not get the
	// victim's secret. Otherwise the clean answer must equal the origin's.
	deception bool
}

// poisonGet is a GET of target with extra field lines.
func poisonGet(target string, fields ...string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: {H}\r\n" + strings.Join(fields, "") + "\r\n"
}

func poisonCorpus() []poisonCase {
	unkeyed := func(field string) poisonCase {
		return poisonCase{name: "unkeyed " + strings.TrimSpace(field), attack: []string{poisonGet("{P}/page", field+"\r\n")}, check: "{P}/page"}
	}
	deceive := func(name, page, delim string) poisonCase {
		return poisonCase{name: name, deception: true,
			attack: []string{poisonGet("{P}/"+page+delim+"x.css", "Cookie: session="+victimSecret+"\r\n")}, check: "{P}/" + page + delim + "x.css"}
	}
	cs := []poisonCase{
		unkeyed("X-Forwarded-Host: evil.test"),
		unkeyed("X-Host: evil.test"),
		unkeyed("X-Forwarded-Server: evil.test"),
		unkeyed("X-Original-Host: evil.test"),
		unkeyed("Forwarded: host=evil.test;proto=http"),
		unkeyed("X-Forwarded-Proto: http"),
		unkeyed("X-Forwarded-Scheme: http"),
		unkeyed("X-Forwarded-Ssl: off"),
		unkeyed("Front-End-Https: off"),
		unkeyed("X-Forwarded-Port: 1337"),
		unkeyed("X-Forwarded-Prefix: /evil"),
		unkeyed("X-Original-URL: /evil"),
		unkeyed("X-Rewrite-URL: /evil"),
		unkeyed("X-HTTP-Method-Override: HEAD"),
		unkeyed("X-HTTP-Method: DELETE"),
		unkeyed("X-Method-Override: PUT"),
		// host, scheme and port in the key
		{name: "Host with a port", attack: []string{"GET {P}/page HTTP/1.1\r\nHost: {H}:1337\r\n\r\n"}, check: "{P}/page"},
		{name: "Host in upper case", attack: []string{"GET {P}/page HTTP/1.1\r\nHost: WWW.SITE.TEST\r\n\r\n"}, check: "{P}/page"},
		{name: "Host with a trailing dot", attack: []string{"GET {P}/page HTTP/1.1\r\nHost: {H}.\r\n\r\n"}, check: "{P}/page"},
		{name: "absolute-form with a port", attack: []string{"GET http://{H}:1337{P}/page HTTP/1.1\r\nHost: {H}\r\n\r\n"}, check: "{P}/page"},
		// fragments and path normalisation
		{name: "fragment in the target", attack: []string{poisonGet("{P}/page#evil")}, check: "{P}/page"},
		{name: "dot segments", attack: []string{poisonGet("/x/..{P}/page")}, check: "{P}/page"},
		{name: "encoded dot segments", attack: []string{poisonGet("/x/%2e%2e{P}/page")}, check: "{P}/page"},
		{name: "encoded slash", attack: []string{poisonGet("{P}%2Fpage")}, check: "{P}/page"},
		{name: "double slash", attack: []string{poisonGet("/{P}//page")}, check: "{P}/page"},
		{name: "path case", attack: []string{poisonGet("{P}/PAGE")}, check: "{P}/page"},
		{name: "trailing dot segment", attack: []string{poisonGet("{P}/page/.")}, check: "{P}/page"},
		// fat GET
		{name: "fat GET", attack: []string{"GET {P}/page HTTP/1.1\r\nHost: {H}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\ncallback=evil\n"}, check: "{P}/page"},
		{name: "fat GET, chunked", attack: []string{"GET {P}/page HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\nd\r\ncallback=evil\r\n0\r\n\r\n"}, check: "{P}/page"},
		// Vary
		{name: "Vary: the attacker's variant", attack: []string{poisonGet("{P}/vary", "X-Variant: evil\r\n")}, check: "{P}/vary"},
		{name: "Vary: two field lines", attack: []string{poisonGet("{P}/vary", "X-Variant: \r\nX-Variant: evil\r\n")}, check: "{P}/vary"},
		{name: "Vary only on the attacker's answer", attack: []string{poisonGet("{P}/maybevary", "X-Variant: evil\r\n")}, check: "{P}/maybevary"},
		// errors made by the attacker's request
		{name: "oversized field: origin 431", attack: []string{poisonGet("{P}/page", "X-Big: "+strings.Repeat("a", 6<<10)+"\r\n")}, check: "{P}/page"},
		{name: "fat GET with bad JSON: origin 400", attack: []string{"GET {P}/page HTTP/1.1\r\nHost: {H}\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nevil"}, check: "{P}/page"},
		{name: "Range past the end: origin 416", attack: []string{poisonGet("{P}/page", "Range: bytes=99999-\r\n")}, check: "{P}/page"},
		{name: "If-None-Match *: origin 304", attack: []string{poisonGet("{P}/page", "If-None-Match: *\r\n")}, check: "{P}/page"},
		{name: "request no-cache then the attack", attack: []string{poisonGet("{P}/page"), poisonGet("{P}/page", "Cache-Control: no-cache\r\nX-Forwarded-Host: evil.test\r\n")}, check: "{P}/page"},
		// web cache deception: four delimiters, and what the origin may say
		deceive("deception /", "account.php", "/"),
		deceive("deception ;", "account.php", ";"),
		deceive("deception %23", "account.php", "%23"),
		deceive("deception %3F", "account.php", "%3F"),
		deceive("deception, origin sets a cookie", "account-cookie.php", "/"),
		deceive("deception, origin says private", "account-private.php", "/"),
		deceive("deception, origin sends Last-Modified", "account-lm.php", "/"),
	}
	return cs
}

// poisonFigure counts a run.
type poisonFigure struct{ cases, poisoned, deceived int }

// runPoisonCorpus runs every case against the tier at addr; direct is the
// origin's own handler, for the clean answers.
func runPoisonCorpus(t *testing.T, where, addr string) poisonFigure {
	var f poisonFigure
	for i, c := range poisonCorpus() {
		f.cases++
		p := fmt.Sprintf("/c%02d", i+1)
		fill := strings.NewReplacer("{P}", p, "{H}", poisonHost)
		for _, a := range c.attack {
			raw := fill.Replace(a)
			out := corpusSend(t, addr, withClose(raw), false)
			if c.deception {
				if !bytes.Contains(out, []byte(victimSecret)) {
					t.Fatalf("%s: the victim did not get their own page: %q", c.name, out)
				}
				continue
			}
			// The attack must make the origin answer differently, or
			// the case proves nothing.
			if clean, attacked := originAnswer(t, "GET "+fill.Replace(c.check)+" HTTP/1.1\r\nHost: "+poisonHost+"\r\n\r\n"), originAnswer(t, raw); clean == attacked &&
				!strings.Contains(c.name, "no-cache then") {
				t.Fatalf("%s: the origin answers the attack as it answers a clean request: %q", c.name, clean)
			}
		}
		check := "GET " + fill.Replace(c.check) + " HTTP/1.1\r\nHost: " + poisonHost + "\r\n\r\n"
		got := answerOf(t, corpusSend(t, addr, withClose(check), false))
		if c.deception {
			if strings.Contains(got, victimSecret) {
				f.deceived++
				t.Errorf("%s (%s): the attacker got the victim's page: %q", c.name, where, got)
			}
			continue
		}
		if want := originAnswer(t, check); got != want {
			f.poisoned++
			t.Errorf("%s (%s): a clean request got\n%q\nthe origin answers it\n%q", c.name, where, got, want)
		}
	}
	t.Logf("poisoning (%s): %d cases, %d poisoned responses, %d deceived", where, f.cases, f.poisoned, f.deceived)
	if f.cases < 25 {
		t.Errorf("the poisoning corpus has %d cases, want at least 25", f.cases)
	}
	return f
}

// withClose adds "Connection: close" after the request line of raw.
func withClose(raw string) string {
	i := strings.Index(raw, "\r\n") + 2
	return raw[:i] + "Connection: close\r\n" + raw[i:]
}

// answerOf is the status, the fields an attacker could use, and the body
// of the one response in out.
func answerOf(t *testing.T, out []byte) string {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("no response: %v: %q", err, out)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("a cut response: %v: %q", err, out)
	}
	return fmt.Sprintf("%d Location=%q Link=%q Set-Cookie=%q Vary=%q\n%s", resp.StatusCode,
		resp.Header.Get("Location"), resp.Header.Get("Link"), resp.Header.Get("Set-Cookie"), resp.Header.Get("Vary"), b)
}

// originAnswer is the origin's own answer to the raw request, in answerOf's
// form.
func originAnswer(t *testing.T, raw string) string {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	rec := httptest.NewRecorder()
	poisonApp(rec, req)
	var b bytes.Buffer
	rec.Result().Write(&b)
	return answerOf(t, b.Bytes())
}

// poisonYAML is an edge or hub config for the site; extra is added to the
// property.
func poisonYAML(name, origin, upstream, extra string) string {
	up := ""
	if upstream != "" {
		up = "upstream: " + upstream + "\n"
	}
	return fmt.Sprintf(`node: {name: %s}
listen: {http: "127.0.0.1:0", admin: "127.0.0.1:0"}
%sproperties:
  - name: site
    hosts: [%s]
    origin: %s
%s`, name, up, poisonHost, origin, extra)
}

func TestPoisoningCorpus(t *testing.T) {
	for _, cfg := range []struct{ name, extra string }{
		{"defaults", ""},
		{"default_ttl 60s", "    default_ttl: 60s\n"},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			origin := httptest.NewServer(http.HandlerFunc(poisonApp))
			defer origin.Close()
			hub := startCorpusCmd(t, runHub, poisonYAML("hub-1", origin.URL, "", cfg.extra))
			hubAddr := hub.addr(t, "public")
			edge := startCorpusCmd(t, runEdge, poisonYAML("edge-1", origin.URL, "http://"+hubAddr, cfg.extra))
			runPoisonCorpus(t, "edge -> hub -> origin, "+cfg.name, edge.addr(t, "public"))
			// A hub should never face clients, but if one does, it keeps
			// its cache clean too (a fresh hub: the edge's run filled this one).
			hub2 := startCorpusCmd(t, runHub, poisonYAML("hub-2", origin.URL, "", cfg.extra))
			runPoisonCorpus(t, "hub -> origin, "+cfg.name, hub2.addr(t, "public"))
		})
	}
}
