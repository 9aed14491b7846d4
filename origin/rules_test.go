package origin

import (
	"testing"
	"unicode/utf8"

	"github.com/vergecdn/verge/configs"
)

func TestRuleMatch(t *testing.T) {
	rules := []Rule{
		{Prefix: "/static/", CacheControl: "immutable"},
		{Glob: "/img/**/*.png", CacheControl: "png"},
		{Glob: "*.html", CacheControl: "html"},
		{Glob: "/v?/*", CacheControl: "v"},
		{Glob: "**/data.json", CacheControl: "data"},
		{Glob: "/a.b+c(d)/[x]", CacheControl: "meta"},
		{Prefix: "/", CacheControl: "rest"},
	}
	rs, err := compileRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{"/static/app.js", "immutable"},
		{"/static/deep/page.html", "immutable"}, // first match wins
		{"/img/a/b/c.png", "png"},
		{"/img/c.png", "rest"}, // "/**/" needs at least the two slashes
		{"/img/a/c.png.txt", "rest"},
		{"/index.html", "html"},
		{"/docs/guide/index.html", "html"},
		{"/docs/html", "rest"},
		{"/v1/x", "v"},
		{"/v1/x/y", "rest"},
		{"/v10/x", "rest"},
		{"/deep/dir/data.json", "data"},
		{"/data.json", "data"},
		{"/a.b+c(d)/[x]", "meta"},
		{"/aXb+c(d)/[x]", "rest"}, // "." is literal
		{"/other", "rest"},
	}
	for _, c := range cases {
		r := rs.find(c.path)
		got := ""
		if r != nil {
			got = r.cacheControl[0]
		}
		if got != c.want {
			t.Errorf("%s: rule %q, want %q", c.path, got, c.want)
		}
	}
	if r := (ruleSet{}).find("/x"); r != nil {
		t.Fatal("empty rule set matched")
	}
}

func TestCompileGlobErrors(t *testing.T) {
	for _, g := range []string{"", "a/b", "/a\x00", "/a\\b", "\xff", string(make([]byte, maxPatternLen+1))} {
		if _, err := compileGlob(g); err == nil {
			t.Errorf("glob %q compiled", g)
		}
	}
}

// refGlob is the glob semantics written the obvious (exponential) way.
func refGlob(p, s []rune) bool {
	switch {
	case len(p) == 0:
		return len(s) == 0
	case len(p) >= 2 && p[0] == '*' && p[1] == '*':
		for i := 0; i <= len(s); i++ {
			if refGlob(p[2:], s[i:]) {
				return true
			}
		}
		return false
	case p[0] == '*':
		for i := 0; ; i++ {
			if refGlob(p[1:], s[i:]) {
				return true
			}
			if i == len(s) || s[i] == '/' {
				return false
			}
		}
	case p[0] == '?':
		return len(s) > 0 && s[0] != '/' && refGlob(p[1:], s[1:])
	default:
		return len(s) > 0 && s[0] == p[0] && refGlob(p[1:], s[1:])
	}
}

func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"*.html", "/a/b.html"}, {"/img/**/*.png", "/img/x/y.png"}, {"/v?/*", "/v1/x"},
		{"**", "/"}, {"***", "/a/b"}, {"/a**b", "/a/x/b"}, {"?*?", "/ab"}, {"/[a-z]+", "/[a-z]+"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, glob, path string) {
		re, err := compileGlob(glob)
		if err != nil {
			return
		}
		if len(glob) > 24 || len(path) > 32 || !utf8.ValidString(path) {
			return // keep the reference matcher's backtracking small
		}
		r := rule{glob: re, base: !containsSlash(glob)}
		subject := path
		if r.base {
			for i := len(path) - 1; i >= 0; i-- {
				if path[i] == '/' {
					subject = path[i+1:]
					break
				}
			}
		}
		if got, want := r.match(path), refGlob([]rune(glob), []rune(subject)); got != want {
			t.Fatalf("glob %q on %q: %v, reference %v (regexp %s)", glob, path, got, want, re)
		}
	})
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// FuzzConfig checks that any YAML that loads and validates also builds rules.
func FuzzConfig(f *testing.F) {
	f.Add("root: /x\nrules:\n  - glob: \"*.html\"\n    cache_control: public\n")
	f.Add("root: /x\nrules:\n  - prefix: /a/\n    surrogate_keys: [a, b]\n    delay: 5ms\n")
	f.Add("root: /x\nupload: {token: 0123456789abcdef, max_size: 1KiB}\ntypes: {.x: text/x}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg := DefaultConfig()
		if err := configs.LoadBytes("f.yaml", []byte(doc), &cfg); err != nil {
			return
		}
		if _, err := compileRules(cfg.Rules); err != nil {
			t.Fatalf("validated config does not compile: %v", err)
		}
	})
}
