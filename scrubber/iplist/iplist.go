// Package iplist parses allow/deny lists of IP prefixes and answers, for one
// address, which rule applies: the longest matching prefix wins, so a list
// can deny a network and allow one host inside it (or the reverse).
//
// The file format is one rule per line:
//
//	# comment
//	deny  203.0.113.0/24
//	allow 203.0.113.7        # a bare address is a /32 (IPv4) or /128 (IPv6)
//	deny  2001:db8::/32
//
// Blank lines and text after '#' are ignored. A prefix with host bits set
// ("10.0.0.1/8"), a zone, a prefix listed as both allow and deny, an unknown
// action or a line longer than 1024 bytes is an error naming the file and
// line. IPv4-mapped IPv6 prefixes (::ffff:a.b.c.d/n, n >= 96) are stored as
// the IPv4 prefix they denote, and addresses are unmapped before lookup, so
// an IPv4 client on a dual-stack socket matches IPv4 rules.
//
// A List is immutable once built and safe for concurrent use; Lookup does not
// allocate.
package iplist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Action is what a rule does with a matching source.
type Action uint8

const (
	None  Action = iota // no rule matches
	Allow               // trusted: skip the rate limits
	Deny                // refused outright
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "none"
}

// Rule is one prefix and its action.
type Rule struct {
	Prefix netip.Prefix
	Action Action
}

func (r Rule) String() string { return r.Action.String() + " " + r.Prefix.String() }

// Limits on one input.
const (
	MaxLineBytes = 1024
	MaxRules     = 1 << 20
	maxErrors    = 20
)

// ParsePrefix parses "a.b.c.d/n", "x::/n" or a bare address (a one-address
// prefix). The prefix must be canonical (no host bits set) and have no zone.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty prefix")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("prefix %q has host bits set (did you mean %s?)", s, m)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address %q", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// ParseAction parses "allow" or "deny".
func ParseAction(s string) (Action, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return None, fmt.Errorf("unknown action %q (want allow or deny)", s)
}

// Parse reads rules in the file format above; name is used in errors
// ("lists.txt:3: ..."). Every problem found (up to 20) is reported, joined.
func Parse(name string, data []byte) ([]Rule, error) {
	var rules []Rule
	var errs []error
	fail := func(line int, format string, args ...any) {
		if len(errs) < maxErrors {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), MaxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			fail(line, "want \"allow PREFIX\" or \"deny PREFIX\", got %q", strings.TrimSpace(text))
			continue
		}
		act, err := ParseAction(fields[0])
		if err != nil {
			fail(line, "%v", err)
			continue
		}
		p, err := ParsePrefix(fields[1])
		if err != nil {
			fail(line, "%v", err)
			continue
		}
		if len(rules) >= MaxRules {
			fail(line, "more than %d rules", MaxRules)
			break
		}
		rules = append(rules, Rule{Prefix: p, Action: act})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			fail(line+1, "line longer than %d bytes", MaxLineBytes)
		} else {
			fail(line+1, "%v", err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rules, nil
}

// List answers lookups over a set of rules.
type List struct {
	v4, v6 lpm
	n      int
}

// pkey is a masked prefix: the address as two 64-bit halves and the length.
type pkey struct {
	hi, lo uint64
	bits   uint8
}

// lpm is a longest-prefix match over the prefix lengths present.
type lpm struct {
	lens []uint8 // distinct lengths, longest first
	m    map[pkey]Action
}

// New builds a List. The same prefix with two different actions is an error
// (which one was meant cannot be guessed); duplicates with the same action
// are fine.
func New(rules []Rule) (*List, error) {
	l := &List{}
	var errs []error
	for _, r := range rules {
		if !r.Prefix.IsValid() {
			errs = append(errs, fmt.Errorf("invalid prefix in rule %q", r))
			continue
		}
		if r.Action != Allow && r.Action != Deny {
			errs = append(errs, fmt.Errorf("rule for %s has no action", r.Prefix))
			continue
		}
		p := r.Prefix.Masked()
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		t := &l.v6
		if p.Addr().Is4() {
			t = &l.v4
		}
		k := keyOf(p.Addr(), p.Bits())
		if t.m == nil {
			t.m = map[pkey]Action{}
		}
		if old, ok := t.m[k]; ok {
			if old != r.Action && len(errs) < maxErrors {
				errs = append(errs, fmt.Errorf("%s is listed as both allow and deny", p))
			}
			continue
		}
		t.m[k] = r.Action
		if !slices.Contains(t.lens, uint8(p.Bits())) {
			t.lens = append(t.lens, uint8(p.Bits()))
		}
		l.n++
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, t := range []*lpm{&l.v4, &l.v6} {
		slices.Sort(t.lens)
		slices.Reverse(t.lens)
	}
	return l, nil
}

// Len is the number of distinct prefixes in the list.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return l.n
}

// Lookup returns the action of the longest prefix containing a, or None.
func (l *List) Lookup(a netip.Addr) Action {
	if l == nil || l.n == 0 {
		return None
	}
	a = a.Unmap()
	t := &l.v6
	if a.Is4() {
		t = &l.v4
	}
	for _, b := range t.lens {
		if act, ok := t.m[keyOf(a, int(b))]; ok {
			return act
		}
	}
	return None
}

// keyOf masks a to bits and returns the map key.
func keyOf(a netip.Addr, bits int) pkey {
	if a.Is4() {
		v := a.As4()
		x := uint64(v[0])<<24 | uint64(v[1])<<16 | uint64(v[2])<<8 | uint64(v[3])
		if bits < 32 {
			x &^= (1<<(32-bits) - 1)
		}
		return pkey{lo: x, bits: uint8(bits)}
	}
	v := a.As16()
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(v[i])
		lo = lo<<8 | uint64(v[8+i])
	}
	switch {
	case bits <= 0:
		hi, lo = 0, 0
	case bits < 64:
		hi &^= 1<<(64-bits) - 1
		lo = 0
	case bits == 64:
		lo = 0
	case bits < 128:
		lo &^= 1<<(128-bits) - 1
	}
	return pkey{hi: hi, lo: lo, bits: uint8(bits)}
}
