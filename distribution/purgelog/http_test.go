package purgelog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vergecdn/verge/edge"
)

const token = "cluster-secret"

// serve serves l's log endpoints on 127.0.0.1 and returns a client for them.
func serve(t *testing.T, l *Log, ready func() error) (*httptest.Server, *Client) {
	t.Helper()
	srv := httptest.NewServer(Handler(l, BearerAuth(token), ready))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// fill puts numbered purges from..to in l.
func fill(t testing.TB, l *Log, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		if _, err := l.Put(numbered(seq)); err != nil {
			t.Fatal(err)
		}
	}
}

func putInto(l *Log) func([]edge.Purge) error {
	return func(ps []edge.Purge) error {
		for _, p := range ps {
			if _, err := l.Put(p); err != nil {
				return err
			}
		}
		return nil
	}
}

func sameLogs(t *testing.T, a, b *Log) {
	t.Helper()
	ra, rb := a.Records(0, 1<<63, 0), b.Records(0, 1<<63, 0)
	if fmt.Sprint(ra) != fmt.Sprint(rb) {
		t.Fatalf("logs differ: %d vs %d records", len(ra), len(rb))
	}
	if fmt.Sprint(a.Summary()) != fmt.Sprint(b.Summary()) {
		t.Fatal("summaries differ")
	}
}

// TestFetchMissedTail is the common case: a node was down while the last
// 1,000 of 6,000 purges were made.
func TestFetchMissedTail(t *testing.T) {
	authority, node := openLog(t, t.TempDir()), openLog(t, t.TempDir())
	fill(t, authority, 1, 6000)
	fill(t, node, 1, 5000)
	_, c := serve(t, authority, nil)
	st, err := c.Fetch(context.Background(), node, putInto(node))
	if err != nil {
		t.Fatal(err)
	}
	sameLogs(t, authority, node)
	// Leaf 78 holds 4992..5055: the 9 records 4992..5000 the node had come along.
	if st.Applied != 1000 || st.Fetched != 1009 || st.Ranges != 1 || st.Requests != 3 {
		t.Errorf("stats %+v", st)
	}
	full, err := c.FetchAll(context.Background(), func(edge.Purge) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if full.Fetched != 6000 || full.Requests != 3 {
		t.Errorf("full transfer %+v", full)
	}
	t.Logf("missed 1000 of 6000: merkle catch-up %d requests, %d bytes; full log %d requests, %d bytes (%.1fx)",
		st.Requests, st.Bytes, full.Requests, full.Bytes, float64(full.Bytes)/float64(st.Bytes))
	if st.Bytes*4 > full.Bytes {
		t.Errorf("catch-up read %d bytes, not much less than the full log's %d", st.Bytes, full.Bytes)
	}
	// In sync now: one request, nothing fetched.
	st, err = c.Fetch(context.Background(), node, putInto(node))
	if err != nil || st.Requests != 1 || st.Fetched != 0 || st.Compared != 6 {
		t.Errorf("second fetch: %+v %v", st, err)
	}
}

// TestFetchHoles: a node that missed purges here and there finds exactly
// them. Ten outages of 100 purges cost ten short ranges; 1,000 purges lost
// uniformly at random (5%) touch nearly every 64-number leaf, so nearly the
// whole log comes back: the price of comparing leaves, not records.
func TestFetchHoles(t *testing.T) {
	const total = 20000
	outages := map[uint64]bool{}
	for o := uint64(0); o < 10; o++ {
		for i := uint64(0); i < 100; i++ {
			outages[1+o*1900+i] = true
		}
	}
	scattered := map[uint64]bool{}
	for i := uint64(0); len(scattered) < 1000; i++ {
		scattered[1+(i*7919)%total] = true
	}
	for _, c := range []struct {
		name      string
		missed    map[uint64]bool
		maxFetch  int
		maxRanges int
	}{
		{"10 outages of 100", outages, 1000 + 10*2*Bucket, 20},
		{"1000 at random", scattered, total, total},
	} {
		t.Run(c.name, func(t *testing.T) {
			authority, node := openLog(t, t.TempDir()), openLog(t, t.TempDir())
			fill(t, authority, 1, total)
			for seq := uint64(1); seq <= total; seq++ {
				if !c.missed[seq] {
					node.Put(numbered(seq))
				}
			}
			_, cl := serve(t, authority, nil)
			applied := 0
			st, err := cl.Fetch(context.Background(), node, func(ps []edge.Purge) error {
				for _, p := range ps {
					if !c.missed[p.Seq] {
						t.Errorf("applied %d, which the node had", p.Seq)
					}
					applied++
					if _, err := node.Put(p); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			sameLogs(t, authority, node)
			if applied != len(c.missed) || st.Fetched > c.maxFetch || st.Ranges > c.maxRanges {
				t.Errorf("applied %d of %d; %+v", applied, len(c.missed), st)
			}
			t.Logf("missed %s of %d: %+v", c.name, total, st)
		})
	}
}

// TestFetchPaged: more missing records than one answer holds.
func TestFetchPaged(t *testing.T) {
	authority, node := openLog(t, t.TempDir()), openLog(t, t.TempDir())
	fill(t, authority, 1, 2*MaxRecords+123)
	_, c := serve(t, authority, nil)
	st, err := c.Fetch(context.Background(), node, putInto(node))
	if err != nil {
		t.Fatal(err)
	}
	sameLogs(t, authority, node)
	if st.Applied != 2*MaxRecords+123 || st.Requests != 1+1+3 { // summary, one level down, 3 pages
		t.Errorf("stats %+v", st)
	}
}

// TestFetchDivergent: the authority's record differs from the node's (its
// log was rebuilt): the authority's version is applied and replaces it; a
// record only the node holds stays.
func TestFetchDivergent(t *testing.T) {
	authority, node := openLog(t, t.TempDir()), openLog(t, t.TempDir())
	fill(t, authority, 1, 300)
	fill(t, node, 1, 300)
	p := numbered(150)
	p.Value += "-rebuilt"
	authority.Put(p)
	node.Put(numbered(5000)) // only the node has it
	_, c := serve(t, authority, nil)
	st, err := c.Fetch(context.Background(), node, putInto(node))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := node.Get(150); got != p || st.Applied != 1 || st.Fetched != 64 {
		t.Errorf("record 150 %+v, stats %+v", got, st)
	}
	if _, ok := node.Get(5000); !ok {
		t.Error("a record only the node held was dropped")
	}
}

func TestFetchEmpty(t *testing.T) {
	authority, node := openLog(t, t.TempDir()), openLog(t, t.TempDir())
	_, c := serve(t, authority, nil)
	st, err := c.Fetch(context.Background(), node, putInto(node))
	if err != nil || st.Requests != 1 || st.Applied != 0 {
		t.Errorf("%+v %v", st, err)
	}
	fill(t, node, 1, 10) // the node knows more than its peer: nothing to do
	if st, err := c.Fetch(context.Background(), node, putInto(node)); err != nil || st.Applied != 0 {
		t.Errorf("%+v %v", st, err)
	}
}

func get(t *testing.T, url, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b))
}

func TestHandlerRequests(t *testing.T) {
	l := openLog(t, t.TempDir())
	fill(t, l, 1, 100)
	srv, _ := serve(t, l, nil)
	for _, c := range []struct {
		path, tok string
		code      int
		want      string
	}{
		{"/purgelog/summary", "", 401, "missing or bad cluster token"},
		{"/purgelog/summary", "wrong", 401, "missing or bad cluster token"},
		{"/purgelog/summary", token, 200, `{"last":100,"count":100,"level":0,"hashes":["`},
		{"/purgelog/tree?level=1&nodes=0", token, 200, `{"level":1,"children":[["`},
		{"/purgelog/tree?level=0&nodes=0", token, 400, "bad level \\\"0\\\": want 1..14"},
		{"/purgelog/tree?level=1", token, 400, `\"nodes\" is required`},
		{"/purgelog/tree?level=1&nodes=1,x", token, 400, `bad node index \"x\"`},
		{"/purgelog/tree?level=14&nodes=4", token, 400, "node index 4 is past the end of level 14"},
		{"/purgelog/tree?level=1&nodes=" + strings.Repeat("0,", MaxTreeNodes) + "0", token, 400, "at most 64 per request"},
		{"/purgelog/records?ranges=1-2", token, 200, `{"records":[{"seq":1,"kind":"prefix","value":"https://www.example.test/dir1/","soft":true},{"seq":2,"kind":"tag","value":"tag-2"}]}`},
		{"/purgelog/records?ranges=1-1,50-51&limit=2", token, 200, `"next":51}`},
		{"/purgelog/records?ranges=200-300", token, 200, `{"records":[]}`},
		{"/purgelog/records?ranges=5-1", token, 400, `bad range \"5-1\"`},
		{"/purgelog/records?ranges=1-2&limit=0", token, 400, `bad limit \"0\"`},
		{"/purgelog/records", token, 400, `\"ranges\" is required`},
	} {
		code, body := get(t, srv.URL+c.path, c.tok)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %s\nwant %d containing %s", c.path, code, body, c.code, c.want)
		}
	}
	res, err := http.Post(srv.URL+"/purgelog/summary", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST summary: %d", res.StatusCode)
	}
	// Not caught up: 503, so nobody copies a log that is behind.
	srv2, c2 := serve(t, l, func() error { return fmt.Errorf("catching up") })
	if code, body := get(t, srv2.URL+"/purgelog/summary", token); code != 503 || !strings.Contains(body, "not caught up: catching up") {
		t.Errorf("not ready: %d %s", code, body)
	}
	if _, err := c2.Fetch(context.Background(), openLog(t, t.TempDir()), nil); err == nil || !strings.Contains(err.Error(), "503 Service Unavailable: purge log not caught up") {
		t.Errorf("fetch from a peer that is behind: %v", err)
	}
}

// TestClientRejectsBadAnswers: a peer that lies is an error, not a silent
// wrong catch-up.
func TestClientRejectsBadAnswers(t *testing.T) {
	for _, c := range []struct {
		name, summary, records, want string
	}{
		{"hash count", `{"last":100,"count":100,"level":0,"hashes":[]}`, "", "summary has 0 hashes, want 2"},
		{"level", `{"last":100,"count":100,"level":3,"hashes":[""]}`, "", "summary level 3 does not fit last 100"},
		{"bad hash", `{"last":1,"count":1,"level":0,"hashes":["zz"]}`, "", "bad answer to /purgelog/summary"},
		{"not json", `<html>`, "", "bad answer"},
		{"outside", `{"last":1,"count":1,"level":0,"hashes":["` + strings.Repeat("ab", 32) + `"]}`,
			`{"records":[{"seq":7,"kind":"all"}]}`, "record 7 is outside the ranges asked for"},
		{"invalid", `{"last":1,"count":1,"level":0,"hashes":["` + strings.Repeat("ab", 32) + `"]}`,
			`{"records":[{"seq":1,"kind":"url","value":"ftp://x"}]}`, "record 1: bad purge request"},
		{"stuck", `{"last":1,"count":1,"level":0,"hashes":["` + strings.Repeat("ab", 32) + `"]}`,
			`{"records":[],"next":1}`, "does not move forward"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/purgelog/summary":
				io.WriteString(w, c.summary)
			case "/purgelog/records":
				io.WriteString(w, c.records)
			}
		}))
		cl, _ := NewClient(srv.URL, token, nil)
		_, err := cl.Fetch(context.Background(), openLog(t, t.TempDir()), func([]edge.Purge) error { return nil })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		srv.Close()
	}
	if _, err := NewClient("127.0.0.1:9000", token, nil); err == nil {
		t.Error("a peer without scheme accepted")
	}
}

func TestSummaryJSON(t *testing.T) {
	l := openLog(t, t.TempDir())
	fill(t, l, 1, 70)
	b, _ := json.Marshal(l.Summary())
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil || fmt.Sprint(s) != fmt.Sprint(l.Summary()) {
		t.Errorf("%s: %v", b, err)
	}
}

func FuzzParseRanges(f *testing.F) {
	for _, s := range []string{"1-2", "1-2,5-9", "", "-", "3-1", "1-2,", "18446744073709551615-18446744073709551615", "1--2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseRanges(s)
		if err != nil {
			return
		}
		if len(rs) == 0 || len(rs) > MaxRanges {
			t.Fatalf("%q: %d ranges", s, len(rs))
		}
		var parts []string
		for _, r := range rs {
			if r.From > r.To {
				t.Fatalf("%q: range %v", s, r)
			}
			parts = append(parts, r.String())
		}
		if again, err := ParseRanges(strings.Join(parts, ",")); err != nil || fmt.Sprint(again) != fmt.Sprint(rs) {
			t.Fatalf("%q: does not round-trip", s)
		}
	})
}

func FuzzParseNodes(f *testing.F) {
	for _, s := range []string{"0", "1,2,3", "", ",", "x", "18446744073709551615", "-1"} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, s string, level int) {
		if _, err := ParseLevel(fmt.Sprint(level)); err != nil {
			return
		}
		nodes, err := ParseNodes(s, level)
		if err != nil {
			return
		}
		for _, n := range nodes {
			if _, _, ok := span(level, n); !ok {
				t.Fatalf("%q level %d: node %d past the end", s, level, n)
			}
		}
	})
}
