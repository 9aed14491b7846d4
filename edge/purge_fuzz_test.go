package edge

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vergecdn/verge/edge/storage"
)

// purgeCases are node purge requests, kept from fuzzing too: the body, and
// whether ParsePurge accepts it.
var purgeCases = []struct {
	body string
	ok   bool
}{
	{`{"kind":"url","value":"https://a.test/x?y=1"}`, true},
	{`{"seq":7,"kind":"prefix","value":"http://a.test/img/","soft":true}`, true},
	{`{"kind":"tag","value":"product-1"}`, true},
	{`{"kind":"host","value":"A.test:8080"}`, true},
	{`{"kind":"all"}`, true},
	{`{"kind":"all","value":"x"}`, false},
	{`{"kind":"url","value":"https://a.test/#f"}`, false},
	{`{"kind":"url","value":"/x"}`, false},
	{`{"kind":"url","value":"ftp://a.test/x"}`, false},
	{`{"kind":"url","value":"http://%zz/"}`, false},
	{`{"kind":"tag","value":"a b"}`, false},
	{`{"kind":"host","value":"a.test/x"}`, false},
	{`{"kind":"host","value":""}`, false},
	{`{"kind":"bogus"}`, false},
	{`{"kind":"all","extra":1}`, false},
	{`{"kind":"all"} {"kind":"all"}`, false},
	{`{"kind":"all","seq":-1}`, false},
	{`{"kind":"all","seq":18446744073709551616}`, false},
	{`{}`, false},
	{``, false},
	{`{"kind":"tag","value":"` + strings.Repeat("x", maxPurgeValue+1) + `"}`, false},
}

func TestParsePurgeCases(t *testing.T) {
	for _, c := range purgeCases {
		if _, err := ParsePurge([]byte(c.body)); (err == nil) != c.ok {
			t.Errorf("%.80s: err %v, want ok=%v", c.body, err, c.ok)
		}
	}
}

// FuzzParsePurge: whatever body reaches the admin API, an accepted purge
// is valid, survives a JSON round trip unchanged (what the purge log
// stores is what the node applied), and selects objects without panicking.
func FuzzParsePurge(f *testing.F) {
	for _, c := range purgeCases {
		f.Add([]byte(c.body))
	}
	objs := []*storage.Object{
		{Key: "a.test/x?y=1"}, {Key: "a.test/img/1.png\x00v1\x00-"}, {Key: "b.test/"},
		{Key: "a.test/t", SurrogateKeys: []string{"product-1"}},
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePurge(body)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted %q does not validate: %v", body, err)
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParsePurge(out)
		if err != nil || q != p {
			t.Fatalf("round trip of %q: %+v, %v", body, q, err)
		}
		match := p.matcher()
		for _, o := range objs {
			match(o)
		}
	})
}
