package management

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Crashers and edge cases found by FuzzParsePurgeRequest are kept here.
var purgeRequestCases = []struct {
	body string
	ok   bool
}{
	{`{"kind":"url","value":"https://a.test/x?y=1"}`, true},
	{`{"kind":"prefix","value":"http://a.test/img/"}`, true},
	{`{"kind":"tag","value":"product-1","soft":true}`, true},
	{`{"kind":"host","value":"a.test"}`, true},
	{`{"kind":"all"}`, true},
	{`{"kind":"all","soft":true}`, true},
	{`{"kind":"url","value":"https://a.test/#frag"}`, false},
	{`{"kind":"url","value":"//a.test/x"}`, false},
	{`{"kind":"url","value":"https:///x"}`, false},
	{`{"kind":"tag","value":""}`, false},
	{`{"kind":"tag","value":"a,b"}`, false},
	{`{"kind":"host","value":"a@b"}`, false},
	{`{"kind":"all","seq":1}`, false},
	{`{"kind":"all","soft":"yes"}`, false},
	{`{"kind":1}`, false},
	{`[]`, false},
	{`null`, false},
	{``, false},
	{`{"kind":"all"}x`, false},
	{`{"kind":"all"}{"kind":"all"}`, false},
	{`{"kind":"URL","value":"https://a.test/"}`, false},
}

func TestParsePurgeRequest(t *testing.T) {
	for _, c := range purgeRequestCases {
		_, err := ParsePurgeRequest([]byte(c.body))
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.body, err, c.ok)
		}
	}
}

func FuzzParsePurgeRequest(f *testing.F) {
	for _, c := range purgeRequestCases {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePurgeRequest(b)
		if err != nil {
			return
		}
		if p.Seq != 0 {
			t.Fatal("operator request carried a sequence number")
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted request does not validate: %v", err)
		}
		if p.Kind == "url" || p.Kind == "prefix" {
			if u, err := url.Parse(p.Value); err != nil || u.Host == "" {
				t.Fatalf("accepted URL %q", p.Value)
			}
		}
		// What management sends a node, the node accepts.
		out, _ := json.Marshal(p)
		if _, err := ParsePurgeRequest(out); err != nil {
			t.Fatalf("round trip %s: %v", out, err)
		}
	})
}

// Cases found by FuzzParseUsageQuery are kept here.
var usageQueryCases = []string{
	"step=minute&from=0&to=60",
	"from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00Z",
	"from=-1",
	"to=99999999999999",
	"property=a%00b",
	"role=all&format=csv&step=day",
}

func FuzzParseUsageQuery(f *testing.F) {
	for _, c := range usageQueryCases {
		f.Add(c)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, _, format, err := ParseUsageQuery(v, now)
		if err != nil {
			return
		}
		if !q.To.After(q.From) || q.Step <= 0 || q.To.Sub(q.From)/q.Step > 50000 || (format != "" && format != "json" && format != "csv") {
			t.Fatalf("accepted %q: %+v", raw, q)
		}
		if strings.ContainsRune(q.Property, 0) {
			t.Fatalf("property with NUL accepted: %q", q.Property)
		}
	})
}

func TestUsageQueryCases(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range usageQueryCases {
		v, _ := url.ParseQuery(c)
		ParseUsageQuery(v, now) // must not panic
	}
}
