package origin_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vergecdn/verge/configs"
	"github.com/vergecdn/verge/origin"
)

// TestSampleConfig loads configs/origin.yaml and serves with it.
func TestSampleConfig(t *testing.T) {
	cfg := origin.DefaultConfig()
	if err := configs.Load("../configs/origin.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/srv/verge/origin" || len(cfg.Rules) != 5 || cfg.Rules[0].Prefix != "/static/" ||
		cfg.Rules[2].Delay.D() != 100*time.Millisecond || cfg.Upload.MaxSize != 1<<30 || !cfg.Upload.Enabled() {
		t.Fatalf("sample decoded as %+v", cfg)
	}

	// Serve a temporary root with the sample's rules (its root and token
	// file are for a real host).
	cfg.Root = t.TempDir()
	token := filepath.Join(t.TempDir(), "token")
	os.WriteFile(token, []byte("sample-config-test-token\n"), 0o600)
	cfg.Upload.TokenFile = token
	cfg.Rules[2].Delay = 0
	s, err := origin.New(cfg, origin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, f := range []string{"static/app.js", "index.html", "video/a.mp4", "other.txt"} {
		p := filepath.Join(cfg.Root, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(f), 0o644)
	}
	for _, c := range []struct{ path, cc, cdn, keys string }{
		{"/static/app.js", "public, max-age=31536000, immutable", "", "static"},
		{"/", "public, max-age=60, stale-while-revalidate=30", "max-age=300", "html"},
		{"/video/a.mp4", "public, max-age=86400", "max-age=604800", "video"},
		{"/other.txt", "public, max-age=3600", "", ""},
	} {
		res, err := ts.Client().Get(ts.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		h := res.Header
		if res.StatusCode != 200 || h.Get("Cache-Control") != c.cc || h.Get("CDN-Cache-Control") != c.cdn || h.Get("Surrogate-Key") != c.keys {
			t.Errorf("%s: %d %v", c.path, res.StatusCode, h)
		}
	}
	req, _ := http.NewRequest("PUT", ts.URL+"/up.txt", strings.NewReader("up"))
	req.Header.Set("Authorization", "Bearer sample-config-test-token")
	if res, err := ts.Client().Do(req); err != nil || res.StatusCode != 201 {
		t.Fatalf("PUT with the token file's token: %v %v", res, err)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"no root", "listen: 127.0.0.1:1\n", "origin.yaml: root: required"},
		{"unknown key", "root: /x\nrules:\n  - prefix: /a/\n    max_age: 5\n", "origin.yaml:4: rules[0].max_age: unknown key"},
		{"bad listen", "root: /x\nlisten: nowhere\n", "origin.yaml:2: listen: want host:port"},
		{"same listeners", "root: /x\nlisten: 127.0.0.1:80\nadmin_listen: 127.0.0.1:80\n", "origin.yaml:3: admin_listen: must differ"},
		{"rule without match", "root: /x\nrules:\n  - cache_control: public\n", "origin.yaml:3: rules[0].prefix: set prefix or glob"},
		{"rule with both", "root: /x\nrules:\n  - prefix: /a\n    glob: '*.a'\n", "origin.yaml:4: rules[0].glob: set prefix or glob, not both"},
		{"relative prefix", "root: /x\nrules:\n  - prefix: static/\n", "origin.yaml:3: rules[0].prefix: must start with"},
		{"glob with relative slash", "root: /x\nrules:\n  - glob: 'a/*.png'\n", "origin.yaml:3: rules[0].glob: glob \"a/*.png\" has a \"/\""},
		{"header injection", "root: /x\nrules:\n  - prefix: /\n    cache_control: \"public\\r\\nSet-Cookie: a=b\"\n", "origin.yaml:4: rules[0].cache_control: not a valid header value"},
		{"surrogate key with space", "root: /x\nrules:\n  - prefix: /\n    surrogate_keys: [ok, 'a b']\n", "origin.yaml:4: rules[0].surrogate_keys[1]: want a non-empty key"},
		{"bad delay", "root: /x\nrules:\n  - prefix: /\n    delay: 5 minutes\n", "origin.yaml:4: rules[0].delay: bad duration"},
		{"long delay", "root: /x\nrules:\n  - prefix: /\n    delay: 1h\n", "origin.yaml:4: rules[0].delay: at most 10m0s"},
		{"short token", "root: /x\nupload:\n  token: abc\n", "origin.yaml:3: upload.token: too short"},
		{"token with space", "root: /x\nupload:\n  token: 'abc def ghi jkl mno'\n", "origin.yaml:3: upload.token: want visible ASCII"},
		{"both tokens", "root: /x\nupload:\n  token: 0123456789abcdefgh\n  token_file: /t\n", "origin.yaml:4: upload.token_file: set token or token_file"},
		{"zero upload size", "root: /x\nupload:\n  max_size: 0\n", "origin.yaml:3: upload.max_size: must be more than 0"},
		{"bad size", "root: /x\nupload:\n  max_size: lots\n", "origin.yaml:3: upload.max_size: bad size"},
		{"ranges", "root: /x\nmax_ranges: 0\n", "origin.yaml:2: max_ranges: want 1 to 256"},
		{"index with slash", "root: /x\nindex: a/index.html\n", "origin.yaml:2: index: want a plain file name"},
		{"bad type", "root: /x\ntypes:\n  .x: 'not a type'\n", "origin.yaml:3: types..x: not a media type"},
		{"bad extension", "root: /x\ntypes:\n  x: text/plain\n", "origin.yaml:3: types.x: want an extension"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := origin.DefaultConfig()
			err := configs.LoadBytes("origin.yaml", []byte(c.yaml), &cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
