package configs

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string            `yaml:"name"`
	Port    int               `yaml:"port"`
	On      bool              `yaml:"on"`
	Ratio   float64           `yaml:"ratio"`
	TTL     Duration          `yaml:"ttl"`
	RAM     Bytes             `yaml:"ram"`
	Hosts   []string          `yaml:"hosts"`
	Inner   inner             `yaml:"inner"`
	Items   []inner           `yaml:"items"`
	Labels  map[string]string `yaml:"labels"`
	Ptr     *inner            `yaml:"ptr"`
	private int
}

type inner struct {
	URL string `yaml:"url"`
	N   uint   `yaml:"n"`
}

// SetDefaults gives list items a default N.
func (i *inner) SetDefaults() { i.N = 42 }

func (s *sample) Validate() error {
	for i, it := range s.Items {
		if it.URL == "bad" {
			return Errorf(Key(Index("items", i), "url"), "must not be bad")
		}
	}
	return nil
}

func TestLoadBytes(t *testing.T) {
	good := `
name: a
port: 8080
on: true
ratio: 0.5
ttl: 1m30s
ram: 512MiB
hosts: [a.example, b.example]
inner: {url: "http://x", n: 3}
items:
  - url: u1
labels:
  k: v
ptr:
  n: 7
`
	var s sample
	s.Port = 1 // a default that the file overrides
	if err := LoadBytes("good.yaml", []byte(good), &s); err != nil {
		t.Fatal(err)
	}
	if s.Name != "a" || s.Port != 8080 || !s.On || s.Ratio != 0.5 || s.TTL.D() != 90*time.Second ||
		s.RAM != 512<<20 || len(s.Hosts) != 2 || s.Inner.N != 3 || s.Items[0].URL != "u1" ||
		s.Labels["k"] != "v" || s.Ptr == nil || s.Ptr.N != 7 || s.Items[0].N != 42 {
		t.Fatalf("decoded %+v", s)
	}

	defaults := sample{Port: 9}
	if err := LoadBytes("empty.yaml", nil, &defaults); err != nil || defaults.Port != 9 {
		t.Fatalf("empty file: %v %+v", err, defaults)
	}

	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "name: a\nbogus: 1\n", "f.yaml:2: bogus: unknown key"},
		{"unknown nested key", "inner:\n  url: x\n  nope: 1\n", "f.yaml:3: inner.nope: unknown key"},
		{"wrong type", "port: abc\n", "f.yaml:1: port: want an integer"},
		{"list for scalar", "name: [a]\n", "f.yaml:1: name: want a string, got a list"},
		{"scalar for list", "hosts: a\n", "f.yaml:1: hosts: want a list"},
		{"bad bool", "on: yes\n", "f.yaml:1: on: want true or false"},
		{"negative uint", "inner: {n: -1}\n", "f.yaml:1: inner.n: want a non-negative integer"},
		{"bad duration", "ttl: 1x\n", "f.yaml:1: ttl: bad duration"},
		{"bad size", "ram: lots\n", "f.yaml:1: ram: bad size"},
		{"duplicate", "name: a\nname: b\n", "f.yaml:2: name: duplicate key"},
		{"syntax", "name: [a\n", "f.yaml"},
		{"two documents", "name: a\n---\nname: b\n", "more than one YAML document"},
		{"validate", "items:\n  - url: ok\n  - url: bad\n", "f.yaml:3: items[1].url: must not be bad"},
		{"item index", "items:\n  - url: ok\n  - n: x\n", "f.yaml:3: items[1].n: want a non-negative integer"},
		{"unexported is unknown", "private: 1\n", "unknown key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s sample
			err := LoadBytes("f.yaml", []byte(c.yaml), &s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "1.5s": 1500 * time.Millisecond, "7d": 168 * time.Hour, "1h30m": 90 * time.Minute} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("Duration(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{"", "1", "-1s", "1.5d", "xd", "99999999d"} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("Duration(%q) accepted", in)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "64KiB": 65536, "1MB": 1e6, "1.5GiB": 3 << 29, "10 B": 10} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "x", "1XB", "NaN", "1e300GiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}

func FuzzLoadBytes(f *testing.F) {
	f.Add([]byte("name: a\nport: 1\nitems: [{url: x}]\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s sample
		err := LoadBytes("fuzz.yaml", data, &s)
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error without file name: %v", err)
		}
	})
}
