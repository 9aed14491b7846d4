package origin

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// rule is a compiled Rule: header values are built once and shared by every
// response (net/http never modifies a header slice it is given).
type rule struct {
	prefix string         // set for prefix rules
	glob   *regexp.Regexp // set for glob rules
	base   bool           // glob matches the last path segment only

	cacheControl    []string // nil: not sent
	cdnCacheControl []string
	surrogateKey    []string
	delay           time.Duration
}

func (r *rule) match(path string) bool {
	if r.glob == nil {
		return strings.HasPrefix(path, r.prefix)
	}
	if r.base {
		path = path[strings.LastIndexByte(path, '/')+1:]
	}
	return r.glob.MatchString(path)
}

// ruleSet is the ordered rule list; the first match wins.
type ruleSet []rule

// find returns the first rule matching path, or nil.
func (rs ruleSet) find(path string) *rule {
	for i := range rs {
		if rs[i].match(path) {
			return &rs[i]
		}
	}
	return nil
}

func compileRules(rules []Rule) (ruleSet, error) {
	out := make(ruleSet, 0, len(rules))
	for i, r := range rules {
		c := rule{prefix: r.Prefix, delay: r.Delay.D()}
		if r.Glob != "" {
			g, err := compileGlob(r.Glob)
			if err != nil {
				return nil, fmt.Errorf("origin: rules[%d].glob: %w", i, err)
			}
			c.glob, c.base = g, !strings.Contains(r.Glob, "/")
		}
		if r.CacheControl != "" {
			c.cacheControl = []string{r.CacheControl}
		}
		if r.CDNCacheControl != "" {
			c.cdnCacheControl = []string{r.CDNCacheControl}
		}
		if len(r.SurrogateKeys) > 0 {
			c.surrogateKey = []string{strings.Join(r.SurrogateKeys, " ")}
		}
		out = append(out, c)
	}
	return out, nil
}

// compileGlob turns a glob into an anchored regular expression: "**" is any
// run of characters, "*" any run without "/", "?" one character other than
// "/", and every other character stands for itself. Go's regexp matches in
// time linear in the input, so no pattern can make matching slow.
func compileGlob(g string) (*regexp.Regexp, error) {
	if g == "" {
		return nil, fmt.Errorf("empty glob")
	}
	if len(g) > maxPatternLen {
		return nil, fmt.Errorf("glob longer than %d bytes", maxPatternLen)
	}
	if !validPathText(g) {
		return nil, fmt.Errorf("glob %q has a control byte, a backslash or invalid UTF-8", g)
	}
	if strings.Contains(g, "/") && g[0] != '/' && !strings.HasPrefix(g, "**") {
		return nil, fmt.Errorf("glob %q has a \"/\" so it matches whole paths: start it with \"/\" or \"**\"", g)
	}
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for i := 0; i < len(g); {
		switch {
		case strings.HasPrefix(g[i:], "**"):
			b.WriteString(`.*`)
			i += 2
		case g[i] == '*':
			b.WriteString(`[^/]*`)
			i++
		case g[i] == '?':
			b.WriteString(`[^/]`)
			i++
		default:
			j := i + 1
			for j < len(g) && g[j] != '*' && g[j] != '?' {
				j++
			}
			b.WriteString(regexp.QuoteMeta(g[i:j]))
			i = j
		}
	}
	b.WriteString(`$`)
	return regexp.Compile(b.String())
}
