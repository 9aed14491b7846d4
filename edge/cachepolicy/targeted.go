package cachepolicy

import "net/textproto"

// ParseTargeted parses a targeted cache-control field (RFC 9213), such as
// CDN-Cache-Control, which is a Structured Field Dictionary (RFC 8941). It
// reports ok=false when the field is absent, empty or does not parse; the
// cache then behaves as if the field were not there. A directive whose value
// has the wrong type (max-age="10") is ignored on its own.
func ParseTargeted(lines []string) (Directives, bool) {
	d := empty()
	if len(lines) == 0 {
		return d, false
	}
	p := sfParser{}
	for i, l := range lines {
		if i > 0 {
			p.s += ","
		}
		p.s += l
	}
	members, ok := p.dictionary()
	if !ok || len(members) == 0 {
		return d, false
	}
	seen := 0
	for _, m := range members {
		switch m.kind {
		case sfBool:
			if m.b {
				d.apply(m.key, "", false, false, &seen)
			}
		case sfInt:
			if m.i >= 0 {
				switch m.key {
				case "max-age", "s-maxage", "stale-while-revalidate", "stale-if-error":
					v := m.i
					if v > MaxDelta {
						v = MaxDelta
					}
					d.applyDelta(m.key, v, &seen)
				}
			}
		}
		// strings, tokens, lists and decimals: no directive of ours takes them
	}
	return d, true
}

func (d *Directives) applyDelta(key string, v int64, seen *int) {
	set := func(bit int, dst *int64) {
		if *seen&bit == 0 {
			*seen |= bit
			*dst = v
		}
	}
	switch key {
	case "max-age":
		set(seenMaxAge, &d.MaxAge)
	case "s-maxage":
		set(seenSMaxAge, &d.SMaxAge)
	case "stale-while-revalidate":
		set(seenSWR, &d.StaleWhileRevalidate)
	case "stale-if-error":
		set(seenSIE, &d.StaleIfError)
	}
}

type sfKind uint8

const (
	sfBool sfKind = iota
	sfInt
	sfOther
)

type sfMember struct {
	key  string
	kind sfKind
	b    bool
	i    int64
}

// sfParser is a strict RFC 8941 dictionary parser that keeps only what cache
// directives need (booleans and integers) and validates everything else.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) dictionary() ([]sfMember, bool) {
	p.sp()
	var out []sfMember
	for p.i < len(p.s) {
		key, ok := p.key()
		if !ok {
			return nil, false
		}
		m := sfMember{key: key, kind: sfBool, b: true}
		if p.peek() == '=' {
			p.i++
			if p.peek() == '(' {
				if !p.innerList() {
					return nil, false
				}
				m.kind = sfOther
			} else {
				kind, b, n, ok := p.bareItem()
				if !ok {
					return nil, false
				}
				m.kind, m.b, m.i = kind, b, n
			}
		}
		if !p.params() {
			return nil, false
		}
		// a later duplicate key overrides an earlier one (RFC 8941 4.2.2)
		replaced := false
		for j := range out {
			if out[j].key == key {
				out[j] = m
				replaced = true
			}
		}
		if !replaced {
			out = append(out, m)
		}
		p.ows()
		if p.i >= len(p.s) {
			return out, true
		}
		if p.s[p.i] != ',' {
			return nil, false
		}
		p.i++
		p.ows()
		if p.i >= len(p.s) {
			return nil, false // trailing comma
		}
	}
	return out, true
}

func (p *sfParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *sfParser) sp() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *sfParser) ows() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *sfParser) key() (string, bool) {
	start := p.i
	if p.i >= len(p.s) {
		return "", false
	}
	c := p.s[p.i]
	if !(c >= 'a' && c <= 'z' || c == '*') {
		return "", false
	}
	p.i++
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*' {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i], true
}

func (p *sfParser) params() bool {
	for p.peek() == ';' {
		p.i++
		p.sp()
		if _, ok := p.key(); !ok {
			return false
		}
		if p.peek() == '=' {
			p.i++
			if _, _, _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

func (p *sfParser) innerList() bool {
	p.i++ // '('
	for {
		p.sp()
		if p.peek() == ')' {
			p.i++
			return p.params()
		}
		if _, _, _, ok := p.bareItem(); !ok {
			return false
		}
		if !p.params() {
			return false
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return false
		}
	}
}

func (p *sfParser) bareItem() (sfKind, bool, int64, bool) {
	c := p.peek()
	switch {
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == '"':
		p.i++
		for p.i < len(p.s) {
			c := p.s[p.i]
			p.i++
			switch {
			case c == '\\':
				if p.i >= len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
					return 0, false, 0, false
				}
				p.i++
			case c == '"':
				return sfOther, false, 0, true
			case c < 0x20 || c > 0x7e:
				return 0, false, 0, false
			}
		}
		return 0, false, 0, false
	case c == '*' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		p.i++
		for p.i < len(p.s) && (isTokenChar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return sfOther, false, 0, true
	case c == ':':
		p.i++
		for p.i < len(p.s) && p.s[p.i] != ':' {
			c := p.s[p.i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
				return 0, false, 0, false
			}
			p.i++
		}
		if p.peek() != ':' {
			return 0, false, 0, false
		}
		p.i++
		return sfOther, false, 0, true
	case c == '?':
		p.i++
		switch p.peek() {
		case '0':
			p.i++
			return sfBool, false, 0, true
		case '1':
			p.i++
			return sfBool, true, 0, true
		}
		return 0, false, 0, false
	}
	return 0, false, 0, false
}

func (p *sfParser) number() (sfKind, bool, int64, bool) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.i++
	}
	var n int64
	digits := 0
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		n = n*10 + int64(p.s[p.i]-'0')
		p.i++
		digits++
		if digits > 15 {
			return 0, false, 0, false
		}
	}
	if digits == 0 {
		return 0, false, 0, false
	}
	if p.peek() == '.' {
		if digits > 12 {
			return 0, false, 0, false
		}
		p.i++
		frac := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			frac++
		}
		if frac == 0 || frac > 3 {
			return 0, false, 0, false
		}
		return sfOther, false, 0, true
	}
	if neg {
		n = -n
	}
	return sfInt, false, n, true
}

func canonical(s string) string { return textproto.CanonicalMIMEHeaderKey(s) }
