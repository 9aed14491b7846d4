package origin

import (
	"errors"
	"mime"
	"net"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/vergecdn/verge/configs"
)

// Config is the origin's configuration (configs/origin.yaml).
type Config struct {
	// Listen is the address of the content listener. Default "127.0.0.1:8070".
	Listen string `yaml:"listen"`
	// AdminListen serves /healthz and /metrics. Default "127.0.0.1:9070".
	AdminListen string `yaml:"admin_listen"`
	// Root is the content directory. Required (no default). A relative path is
	// relative to the working directory.
	Root string `yaml:"root"`
	// Index is the file served for a path ending in "/". Default "index.html";
	// "" disables index files (such paths are then 404). Directories are never listed.
	Index string `yaml:"index"`
	// MaxRanges is the most byte ranges one request may ask for; more is a 416.
	// Default 16.
	MaxRanges int `yaml:"max_ranges"`
	// ETagCacheEntries bounds how many file versions keep their content hash in
	// memory (about 200 bytes each). Default 65536.
	ETagCacheEntries int `yaml:"etag_cache_entries"`
	// NotFoundCacheControl is the Cache-Control of a 404. Default "no-store".
	NotFoundCacheControl string `yaml:"not_found_cache_control"`
	// Types maps file extensions (".webmanifest") to Content-Types; they take
	// precedence over the built-in table. Default none.
	Types map[string]string `yaml:"types"`
	// Rules set caching headers and delays by path; the first match wins.
	// Default none (no Cache-Control; caches then use heuristics).
	Rules []Rule `yaml:"rules"`
	// Upload configures PUT and DELETE. Default: disabled.
	Upload Upload `yaml:"upload"`
	// Drain is how long shutdown waits for in-flight requests. Default 10s.
	Drain configs.Duration `yaml:"drain"`
}

// Rule sets response headers (and a delay) for the paths it matches. Exactly
// one of Prefix and Glob is set.
type Rule struct {
	// Prefix matches paths that start with it ("/static/"). Default "".
	Prefix string `yaml:"prefix"`
	// Glob matches with * (any run of characters but "/"), ** (any run,
	// "/" included) and ? (one character but "/"); everything else is literal.
	// A glob without "/" is matched against the last path segment ("*.html"),
	// one with "/" against the whole path ("/img/**/*.png"). Default "".
	Glob string `yaml:"glob"`
	// CacheControl is sent as Cache-Control. Default "" (not sent).
	CacheControl string `yaml:"cache_control"`
	// CDNCacheControl is sent as CDN-Cache-Control (RFC 9213). Default "" (not sent).
	CDNCacheControl string `yaml:"cdn_cache_control"`
	// SurrogateKeys are sent space-separated as Surrogate-Key, for purges by
	// key. Default none.
	SurrogateKeys []string `yaml:"surrogate_keys"`
	// Delay holds every GET and HEAD this rule matches for this long before it
	// is answered (a slow origin for tests and demos). Default 0, at most 10m.
	Delay configs.Duration `yaml:"delay"`
}

// Upload configures the upload API. It is enabled when a token is set.
type Upload struct {
	// Token is the bearer token PUT and DELETE need (at least 16 characters).
	// Default "" (uploads disabled unless TokenFile is set).
	Token string `yaml:"token"`
	// TokenFile is a file holding the token (surrounding whitespace is
	// trimmed); read at start. Default "". At most one of Token and TokenFile.
	TokenFile string `yaml:"token_file"`
	// MaxSize is the largest body a PUT may carry; larger is a 413.
	// Default 1GiB.
	MaxSize configs.Bytes `yaml:"max_size"`
}

// Enabled reports whether the upload API is on.
func (u Upload) Enabled() bool { return u.Token != "" || u.TokenFile != "" }

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		Listen:               "127.0.0.1:8070",
		AdminListen:          "127.0.0.1:9070",
		Index:                "index.html",
		MaxRanges:            16,
		ETagCacheEntries:     65536,
		NotFoundCacheControl: "no-store",
		Upload:               Upload{MaxSize: 1 << 30},
		Drain:                configs.Duration(10 * time.Second),
	}
}

// Limits on rule values.
const (
	maxDelay      = 10 * time.Minute
	maxPatternLen = 512
	maxKeyLen     = 256
	minTokenLen   = 16
)

// Validate checks the configuration; errors name their keys.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, configs.Errorf(key, format, args...))
	}
	checkAddr := func(key, v string) {
		if v == "" {
			add(key, "required (host:port)")
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			add(key, "want host:port, got %q", v)
		}
	}
	checkAddr("listen", c.Listen)
	checkAddr("admin_listen", c.AdminListen)
	if c.Listen != "" && c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		add("admin_listen", "must differ from listen (%q)", c.Listen)
	}
	if c.Root == "" {
		add("root", "required: the directory to serve")
	}
	if c.Index != "" && (strings.ContainsAny(c.Index, "/\\\x00") || strings.HasPrefix(c.Index, ".")) {
		add("index", "want a plain file name such as index.html, got %q", c.Index)
	}
	if c.MaxRanges < 1 || c.MaxRanges > 256 {
		add("max_ranges", "want 1 to 256, got %d", c.MaxRanges)
	}
	if c.ETagCacheEntries < 1 {
		add("etag_cache_entries", "want at least 1, got %d", c.ETagCacheEntries)
	}
	if !httpguts.ValidHeaderFieldValue(c.NotFoundCacheControl) {
		add("not_found_cache_control", "not a valid header value: %q", c.NotFoundCacheControl)
	}
	for ext, typ := range c.Types {
		key := configs.Key("types", ext)
		if !strings.HasPrefix(ext, ".") || len(ext) < 2 || strings.ContainsAny(ext, "/\\ \x00") {
			add(key, "want an extension such as \".webmanifest\"")
		}
		if _, _, err := mime.ParseMediaType(typ); err != nil || !httpguts.ValidHeaderFieldValue(typ) {
			add(key, "not a media type: %q", typ)
		}
	}
	for i := range c.Rules {
		errs = append(errs, c.Rules[i].validate(configs.Index("rules", i))...)
	}
	u := c.Upload
	switch {
	case u.Token != "" && u.TokenFile != "":
		add("upload.token_file", "set token or token_file, not both")
	case u.Token != "":
		if err := checkToken(u.Token); err != nil {
			add("upload.token", "%v", err)
		}
	}
	if u.MaxSize <= 0 {
		add("upload.max_size", "must be more than 0")
	}
	return errors.Join(errs...)
}

func (r *Rule) validate(key string) []error {
	var errs []error
	add := func(k, format string, args ...any) {
		errs = append(errs, configs.Errorf(configs.Key(key, k), format, args...))
	}
	switch {
	case r.Prefix == "" && r.Glob == "":
		add("prefix", "set prefix or glob")
	case r.Prefix != "" && r.Glob != "":
		add("glob", "set prefix or glob, not both")
	case r.Prefix != "":
		if !strings.HasPrefix(r.Prefix, "/") {
			add("prefix", "must start with \"/\", got %q", r.Prefix)
		} else if len(r.Prefix) > maxPatternLen || !validPathText(r.Prefix) {
			add("prefix", "not a valid path prefix: %q", r.Prefix)
		}
	default:
		if _, err := compileGlob(r.Glob); err != nil {
			add("glob", "%v", err)
		}
	}
	if !httpguts.ValidHeaderFieldValue(r.CacheControl) {
		add("cache_control", "not a valid header value: %q", r.CacheControl)
	}
	if !httpguts.ValidHeaderFieldValue(r.CDNCacheControl) {
		add("cdn_cache_control", "not a valid header value: %q", r.CDNCacheControl)
	}
	for j, k := range r.SurrogateKeys {
		if !validSurrogateKey(k) {
			add(configs.Index("surrogate_keys", j), "want a non-empty key of visible ASCII without spaces, at most %d bytes, got %q", maxKeyLen, k)
		}
	}
	if r.Delay.D() > maxDelay {
		add("delay", "at most %s, got %s", maxDelay, r.Delay)
	}
	return errs
}

func validSurrogateKey(k string) bool {
	if k == "" || len(k) > maxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] >= 0x7f {
			return false
		}
	}
	return true
}

// checkToken accepts tokens of at least minTokenLen visible ASCII characters.
func checkToken(t string) error {
	if len(t) < minTokenLen {
		return errors.New("too short: want at least 16 characters")
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f {
			return errors.New("want visible ASCII characters only")
		}
	}
	return nil
}
