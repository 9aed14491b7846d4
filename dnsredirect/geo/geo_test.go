package geo

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleCSV = `# cidr,country,continent,lat,lon
cidr,country,continent,lat,lon
192.0.2.0/24,DE,EU,50.11,8.68
198.51.100.0/24,us,na,37.75,-97.82
10.0.0.0/8,,AS,,
10.1.0.0/16,FR,EU,48.86,2.35
2001:db8:e::/48,FR,EU,48.86,2.35
::ffff:203.0.113.0/120,JP,AS,35.69,139.69
`

func buildDB(t testing.TB, csvText string) *DB {
	t.Helper()
	nets, err := ParseCSV("t.csv", strings.NewReader(csvText))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := WriteMMDB(&buf, "t.csv", nets); err != nil {
		t.Fatal(err)
	}
	db, err := OpenBytes("t.mmdb", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestBuildAndLookup(t *testing.T) {
	db := buildDB(t, sampleCSV)
	cases := []struct {
		addr    string
		want    Location
		network string
	}{
		{"192.0.2.77", Location{Country: "DE", Continent: "EU", Lat: 50.11, Lon: 8.68, HasCoords: true}, "192.0.2.0/24"},
		{"198.51.100.1", Location{Country: "US", Continent: "NA", Lat: 37.75, Lon: -97.82, HasCoords: true}, "198.51.100.0/24"},
		{"10.9.9.9", Location{Continent: "AS"}, ""},
		// The /16 is more specific than the /8 listed before it.
		{"10.1.2.3", Location{Country: "FR", Continent: "EU", Lat: 48.86, Lon: 2.35, HasCoords: true}, "10.1.0.0/16"},
		{"2001:db8:e:1::5", Location{Country: "FR", Continent: "EU", Lat: 48.86, Lon: 2.35, HasCoords: true}, "2001:db8:e::/48"},
		// An IPv4-mapped row is stored as IPv4; a mapped query is unmapped.
		{"::ffff:203.0.113.9", Location{Country: "JP", Continent: "AS", Lat: 35.69, Lon: 139.69, HasCoords: true}, "203.0.113.0/24"},
		{"203.0.113.9", Location{Country: "JP", Continent: "AS", Lat: 35.69, Lon: 139.69, HasCoords: true}, "203.0.113.0/24"},
		{"8.8.8.8", Location{}, ""},
		{"2001:db8:f::1", Location{}, ""},
	}
	for _, c := range cases {
		t.Run(c.addr, func(t *testing.T) {
			a := netip.MustParseAddr(c.addr)
			loc, p, err := db.Lookup(a)
			if err != nil {
				t.Fatal(err)
			}
			if loc != c.want {
				t.Errorf("location %+v, want %+v", loc, c.want)
			}
			if !p.Contains(a.Unmap()) {
				t.Errorf("network %s does not hold %s", p, a)
			}
			if c.network != "" && p.String() != c.network {
				t.Errorf("network %s, want %s", p, c.network)
			}
			if c.want.Known() != loc.Known() {
				t.Errorf("Known() = %v", loc.Known())
			}
		})
	}
	// The network of an address the database does not hold is a run of
	// addresses it holds nothing for: other addresses in it miss too.
	_, p, _ := db.Lookup(netip.MustParseAddr("8.8.8.8"))
	if p.Bits() == 0 || p.Bits() > 24 {
		t.Fatalf("miss network %s: want a short prefix around 8.8.8.8", p)
	}
	if loc, _, _ := db.Lookup(p.Addr()); loc.Known() {
		t.Fatalf("%s is in the empty network %s but has %+v", p.Addr(), p, loc)
	}
}

// The bench's mmdb was written by a different tool; it must read the same.
func TestReadsBenchDB(t *testing.T) {
	path := filepath.Join("..", "..", "..", "shared", "bench", "dns", "data", "geo.mmdb")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("bench data not here (%v); skipping", err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	loc, p, err := db.Lookup(netip.MustParseAddr("81.2.69.142"))
	if err != nil || loc.Country != "GB" || loc.Continent != "EU" || !loc.HasCoords || p.String() != "81.2.69.0/24" {
		t.Fatalf("got %+v %s %v", loc, p, err)
	}
	typ, _, nodes := db.Metadata()
	if typ != "GeoIP2-City" || nodes == 0 {
		t.Fatalf("metadata %q %d", typ, nodes)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.mmdb")
	os.WriteFile(garbage, []byte("this is not a MaxMind database at all"), 0o644)
	unreadable := filepath.Join(dir, "unreadable.mmdb")
	os.WriteFile(unreadable, []byte("x"), 0o000)

	cases := []struct{ path, want string }{
		{filepath.Join(dir, "missing.mmdb"), "missing.mmdb: no such file or directory"},
		{garbage, "garbage.mmdb: not a MaxMind DB"},
		{dir, "not a MaxMind DB"},
	}
	if os.Geteuid() != 0 { // root reads mode-000 files
		cases = append(cases, struct{ path, want string }{unreadable, "unreadable.mmdb: permission denied"})
	}
	for _, c := range cases {
		if _, err := Open(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) = %v, want an error containing %q", c.path, err, c.want)
		}
	}
}

func TestParseCSVErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"fields", "192.0.2.0/24,DE,EU\n", "f.csv:1: want 5 fields"},
		{"cidr", "192.0.2.0,DE,EU,1,2\n", `f.csv:1:1: cidr: want a network like`},
		{"host bits", "192.0.2.1/24,DE,EU,1,2\n", "f.csv:1:1: cidr: \"192.0.2.1/24\" has bits set after the prefix length (did you mean 192.0.2.0/24?)"},
		{"country", "192.0.2.0/24,DEU,EU,1,2\n", `f.csv:1:14: country: want a two-letter`},
		{"continent", "# c\n192.0.2.0/24,DE,XX,1,2\n", `f.csv:2:17: continent: want one of`},
		{"lat range", "192.0.2.0/24,DE,EU,91,2\n", `f.csv:1:20: lat: want a latitude`},
		{"lon nan", "192.0.2.0/24,DE,EU,1,NaN\n", `f.csv:1:22: lon: want a longitude`},
		{"lat alone", "192.0.2.0/24,DE,EU,1,\n", `f.csv:1:22: lon: missing`},
		{"empty row", "192.0.2.0/24,,,,\n", "f.csv:1:14: row has no country, continent or coordinates"},
		{"duplicate", "192.0.2.0/24,DE,EU,,\n192.0.2.0/24,FR,EU,,\n", "f.csv:2:1: cidr: network 192.0.2.0/24 already given on line 1"},
		{"quote", "192.0.2.0/24,\"DE,EU,,\n", "f.csv:1"},
		{"zone", "fe80::%eth0/64,DE,EU,,\n", "f.csv:1:1: cidr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCSV("f.csv", strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			var ce *CSVError
			if !errors.As(err, &ce) || ce.File != "f.csv" || ce.Line == 0 {
				t.Fatalf("error %#v does not name the file and line", err)
			}
		})
	}
	// Several problems are all reported, each with its line.
	_, err := ParseCSV("f.csv", strings.NewReader("1.0.0.0/8,D,EU,,\n2.0.0.0/8,DE,EU,,\n3.0.0.0/8,DE,ZZ,,\n"))
	if err == nil || !strings.Contains(err.Error(), "f.csv:1:") || !strings.Contains(err.Error(), "f.csv:3:") {
		t.Fatalf("got %v", err)
	}
}

// A network inside the IPv4-mapped range that is not an IPv4 network cannot
// be stored (the range is an alias of the IPv4 tree); the error names its row.
func TestWriteMMDBAliasedNetwork(t *testing.T) {
	nets, err := ParseCSV("a.csv", strings.NewReader("192.0.2.0/24,DE,EU,,\n2002:c000:200::/40,DE,EU,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = WriteMMDB(&bytes.Buffer{}, "a.csv", nets)
	if err == nil || !strings.HasPrefix(err.Error(), "a.csv:2:1: cidr: cannot insert 2002:c000:200::/40") {
		t.Fatalf("got %v", err)
	}
}

func TestDistance(t *testing.T) {
	const london, paris = 0, 1
	pts := [][2]float64{{51.5074, -0.1278}, {48.8566, 2.3522}}
	d := Distance(pts[london][0], pts[london][1], pts[paris][0], pts[paris][1])
	if math.Abs(d-343.6) > 1 {
		t.Errorf("London-Paris %.1f km, want about 343.6", d)
	}
	if back := Distance(pts[paris][0], pts[paris][1], pts[london][0], pts[london][1]); back != d {
		t.Errorf("not symmetric: %v vs %v", back, d)
	}
	if z := Distance(10, 20, 10, 20); z != 0 {
		t.Errorf("same point %v", z)
	}
	if half := Distance(0, 0, 0, 180); math.Abs(half-math.Pi*earthRadiusKm) > 1e-6 {
		t.Errorf("antipodes %v", half)
	}
	// Across the antimeridian: Fiji to Samoa is short, not half the globe.
	if fs := Distance(-17.7, 178.0, -13.8, -172.1); fs > 1300 {
		t.Errorf("across the antimeridian %v km", fs)
	}
}

func FuzzParseCSV(f *testing.F) {
	f.Add(sampleCSV)
	f.Add("192.0.2.0/24,DE,EU,50,8\n")
	f.Add("cidr\n\"a\"b\n")
	f.Add("::ffff:1.2.3.4/128,,,1e309,\n")
	f.Add("1.2.3.4/32,,,,\n")
	f.Fuzz(func(t *testing.T, in string) {
		nets, err := ParseCSV("fuzz.csv", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.csv:") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		for _, n := range nets {
			if !n.Prefix.IsValid() || n.Prefix != n.Prefix.Masked() || n.Prefix.Addr().Is4In6() || !n.Known() || n.Line < 1 {
				t.Fatalf("bad network %+v", n)
			}
			if n.HasCoords && !validCoords(n.Lat, n.Lon) {
				t.Fatalf("bad coordinates %+v", n)
			}
		}
		// Whatever parses either builds a database that reads back, or is
		// refused with the row's line.
		var buf bytes.Buffer
		if _, err := WriteMMDB(&buf, "fuzz.csv", nets); err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.csv:") {
				t.Fatalf("write error without place: %v", err)
			}
			return
		}
		db, err := OpenBytes("fuzz.mmdb", buf.Bytes())
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer db.Close()
		for _, n := range nets {
			if _, _, err := db.Lookup(n.Prefix.Addr()); err != nil {
				t.Fatalf("lookup %s: %v", n.Prefix, err)
			}
		}
	})
}
