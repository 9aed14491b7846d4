package iplist

import (
	"net/netip"
	"strings"
	"testing"
)

func mustList(t *testing.T, text string) *List {
	t.Helper()
	rules, err := Parse("t.txt", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(rules)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLookupLongestPrefixWins(t *testing.T) {
	l := mustList(t, `
# a deny list with holes
deny  203.0.113.0/24
allow 203.0.113.7          # one trusted host inside it
deny  10.0.0.0/8
allow 10.1.0.0/16
deny  10.1.2.0/24
deny  2001:db8::/32
allow 2001:db8:1::/48
deny  ::ffff:198.51.100.0/120
allow 0.0.0.0/0
`)
	cases := []struct {
		addr string
		want Action
	}{
		{"203.0.113.1", Deny},
		{"203.0.113.7", Allow},
		{"10.9.9.9", Deny},
		{"10.1.9.9", Allow},
		{"10.1.2.3", Deny},
		{"192.0.2.1", Allow}, // 0.0.0.0/0
		{"2001:db8::1", Deny},
		{"2001:db8:1::1", Allow},
		{"2001:db9::1", None}, // no IPv6 default
		{"198.51.100.9", Deny},
		{"::ffff:198.51.100.9", Deny}, // mapped client on a dual-stack socket
		{"::ffff:203.0.113.7", Allow},
	}
	for _, c := range cases {
		if got := l.Lookup(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("%s: %v, want %v", c.addr, got, c.want)
		}
	}
	if l.Len() != 9 {
		t.Errorf("Len %d, want 9", l.Len())
	}
	var empty *List
	if empty.Lookup(netip.MustParseAddr("1.2.3.4")) != None || empty.Len() != 0 {
		t.Error("nil list should match nothing")
	}
}

// parseCases includes every input the fuzzer found interesting.
var parseCases = []struct {
	name, in, wantErr string
}{
	{"ok", "deny 1.2.3.0/24\nallow ::1\n", ""},
	{"comment only", "# nothing\n\n   \n", ""},
	{"crlf", "deny 1.2.3.0/24\r\nallow 1.2.3.4\r\n", ""},
	{"host bits", "deny 10.0.0.1/8", "t.txt:1: prefix \"10.0.0.1/8\" has host bits set (did you mean 10.0.0.0/8?)"},
	{"bad action", "block 1.2.3.4", "t.txt:1: unknown action \"block\""},
	{"missing prefix", "\n\ndeny", "t.txt:3: want \"allow PREFIX\" or \"deny PREFIX\""},
	{"extra field", "deny 1.2.3.4 5.6.7.8", "t.txt:1: want \"allow PREFIX\""},
	{"bad prefix", "deny 1.2.3.0/33", "t.txt:1: bad prefix \"1.2.3.0/33\""},
	{"bad addr", "allow 1.2.3", "t.txt:1: bad address \"1.2.3\""},
	{"zone", "allow fe80::1%eth0", "t.txt:1: address \"fe80::1%eth0\" has a zone"},
	{"zone in prefix", "allow fe80::%eth0/64", "t.txt:1: bad prefix"},
	{"two errors", "deny x\nallow y\n", "t.txt:2: bad address \"y\""},
	{"long line", "deny " + strings.Repeat(" ", 2000) + "1.2.3.4", "t.txt:1: line longer than 1024 bytes"},
	{"nul", "deny 1.2.3.4\x00", "t.txt:1: bad address"},
}

func TestParse(t *testing.T) {
	for _, c := range parseCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.txt", []byte(c.in))
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestNewConflicts(t *testing.T) {
	rules, err := Parse("t.txt", []byte("deny 1.2.3.0/24\nallow 1.2.3.0/24\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(rules); err == nil || !strings.Contains(err.Error(), "1.2.3.0/24 is listed as both allow and deny") {
		t.Fatalf("conflict: %v", err)
	}
	// The same rule twice is fine; a mapped and a plain IPv4 prefix are one.
	l, err := New([]Rule{
		{netip.MustParsePrefix("1.2.3.0/24"), Deny},
		{netip.MustParsePrefix("::ffff:1.2.3.0/120"), Deny},
	})
	if err != nil || l.Len() != 1 {
		t.Fatalf("duplicates: %v, len %d", err, l.Len())
	}
	if _, err := New([]Rule{{Prefix: netip.Prefix{}, Action: Deny}}); err == nil {
		t.Fatal("invalid prefix accepted")
	}
	if _, err := New([]Rule{{Prefix: netip.MustParsePrefix("1.0.0.0/8")}}); err == nil {
		t.Fatal("rule without action accepted")
	}
}

func TestKeyOfMasks(t *testing.T) {
	for bits := 0; bits <= 128; bits++ {
		a := netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
		want := netip.PrefixFrom(a, bits).Masked().Addr()
		if keyOf(a, bits) != keyOf(want, bits) {
			t.Fatalf("/%d: key of %s differs from key of its masked form %s", bits, a, want)
		}
	}
	for bits := 0; bits <= 32; bits++ {
		a := netip.MustParseAddr("255.255.255.255")
		want := netip.PrefixFrom(a, bits).Masked().Addr()
		if keyOf(a, bits) != keyOf(want, bits) {
			t.Fatalf("/%d: IPv4 key differs from its masked form", bits)
		}
	}
}

// FuzzParse: no input crashes the parser; whatever parses builds a List
// whose lookups agree with a brute-force scan of the rules.
func FuzzParse(f *testing.F) {
	for _, c := range parseCases {
		f.Add(c.in, "10.1.2.3")
	}
	f.Add("deny 0.0.0.0/0\nallow 10.0.0.0/8\n", "10.0.0.1")
	f.Add("deny ::/0\nallow ::ffff:0:0/96\n", "::ffff:1.2.3.4")
	f.Fuzz(func(t *testing.T, text, addr string) {
		rules, err := Parse("f.txt", []byte(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.txt:") {
				t.Fatalf("error without file:line: %v", err)
			}
			return
		}
		l, err := New(rules)
		if err != nil {
			return // conflicting rules
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		a = a.WithZone("")
		got := l.Lookup(a)
		want, best := None, -1
		for _, r := range rules {
			if r.Prefix.Contains(a.Unmap()) && r.Prefix.Bits() > best {
				want, best = r.Action, r.Prefix.Bits()
			}
		}
		if got != want {
			t.Fatalf("Lookup(%s) = %v, brute force %v", a, got, want)
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	rules := make([]Rule, 0, 1000)
	for i := 0; i < 1000; i++ {
		rules = append(rules, Rule{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24), Deny})
	}
	rules = append(rules, Rule{netip.MustParsePrefix("192.0.2.0/28"), Allow}, Rule{netip.MustParsePrefix("172.16.0.0/12"), Deny})
	l, err := New(rules)
	if err != nil {
		b.Fatal(err)
	}
	a := netip.MustParseAddr("127.0.1.1")
	b.ReportAllocs()
	for b.Loop() {
		l.Lookup(a)
	}
}
