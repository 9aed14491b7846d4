package geo

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Network is one row of a geo CSV: a network and where it is.
type Network struct {
	Prefix netip.Prefix // masked; IPv4 networks are plain IPv4 prefixes
	Location
	Line int // 1-based line of the row in its CSV file
}

// CSVError is a problem at a place in a CSV file.
type CSVError struct {
	File   string
	Line   int    // 1-based
	Column int    // 1-based byte column of the field; 0 when the whole line is meant
	Field  string // "cidr", "country", "continent", "lat", "lon"; "" for the row
	Msg    string
}

func (e *CSVError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(e.Line))
	if e.Column > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Column))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// csvFields are the columns of a geo CSV, in order.
var csvFields = [...]string{"cidr", "country", "continent", "lat", "lon"}

// continentNames are the continent codes MaxMind uses, with English names.
var continentNames = map[string]string{
	"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe",
	"NA": "North America", "OC": "Oceania", "SA": "South America",
}

// ValidContinent reports whether code is one of AF AN AS EU NA OC SA.
func ValidContinent(code string) bool { _, ok := continentNames[code]; return ok }

// ValidCountry reports whether code looks like an ISO 3166-1 alpha-2 code
// (two upper-case ASCII letters).
func ValidCountry(code string) bool {
	return len(code) == 2 && code[0] >= 'A' && code[0] <= 'Z' && code[1] >= 'A' && code[1] <= 'Z'
}

// maxCSVErrors bounds how many problems one file reports.
const maxCSVErrors = 20

// ParseCSV reads "cidr,country,continent,lat,lon" rows from r (named name in
// errors). Blank lines and lines starting with '#' are skipped, and so is a
// first row that starts with "cidr" (a header). Country and continent codes
// are case-insensitive; either may be empty. lat and lon are both given or
// both empty. A row must say something: a country, a continent or
// coordinates. Every error is a *CSVError naming the file, line and column;
// several are joined with errors.Join.
func ParseCSV(name string, r io.Reader) ([]Network, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var (
		out   []Network
		errs  []error
		seen  = map[netip.Prefix]int{}
		first = true
	)
	fail := func(line, col int, field, format string, args ...any) {
		errs = append(errs, &CSVError{File: name, Line: line, Column: col, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	for len(errs) < maxCSVErrors {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				fail(pe.Line, pe.Column, "", "%v", pe.Err)
			} else {
				errs = append(errs, fmt.Errorf("geo: read %s: %w", name, err))
			}
			break // the reader cannot resynchronise after a syntax error
		}
		line, _ := cr.FieldPos(0)
		col := func(i int) int { _, c := cr.FieldPos(i); return c }
		if first {
			first = false
			if strings.EqualFold(strings.TrimSpace(rec[0]), "cidr") {
				continue
			}
		}
		if len(rec) != len(csvFields) {
			fail(line, 0, "", "want %d fields (cidr,country,continent,lat,lon), got %d", len(csvFields), len(rec))
			continue
		}
		n, ok := Network{Line: line}, true
		bad := func(i int, format string, args ...any) {
			fail(line, col(i), csvFields[i], format, args...)
			ok = false
		}

		cidr := strings.TrimSpace(rec[0])
		p, err := netip.ParsePrefix(cidr)
		switch {
		case err != nil:
			bad(0, "want a network like 192.0.2.0/24 or 2001:db8::/32, got %q", cidr)
		case p.Addr().Zone() != "":
			bad(0, "a network has no zone, got %q", cidr)
		case p != p.Masked():
			bad(0, "%q has bits set after the prefix length (did you mean %s?)", cidr, p.Masked())
		default:
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			if prev, dup := seen[p]; dup {
				bad(0, "network %s already given on line %d", p, prev)
			}
			seen[p] = line
			n.Prefix = p
		}

		n.Country = strings.ToUpper(strings.TrimSpace(rec[1]))
		if n.Country != "" && !ValidCountry(n.Country) {
			bad(1, "want a two-letter ISO 3166-1 code like DE, got %q", rec[1])
		}
		n.Continent = strings.ToUpper(strings.TrimSpace(rec[2]))
		if n.Continent != "" && !ValidContinent(n.Continent) {
			bad(2, "want one of AF AN AS EU NA OC SA, got %q", rec[2])
		}

		latS, lonS := strings.TrimSpace(rec[3]), strings.TrimSpace(rec[4])
		switch {
		case latS == "" && lonS == "":
		case latS == "":
			bad(3, "missing (lat and lon go together)")
		case lonS == "":
			bad(4, "missing (lat and lon go together)")
		default:
			lat, latOK := parseDegrees(latS, 90)
			lon, lonOK := parseDegrees(lonS, 180)
			if !latOK {
				bad(3, "want a latitude between -90 and 90, got %q", latS)
			}
			if !lonOK {
				bad(4, "want a longitude between -180 and 180, got %q", lonS)
			}
			n.Lat, n.Lon, n.HasCoords = lat, lon, latOK && lonOK
		}
		if ok && !n.Known() {
			fail(line, col(1), "", "row has no country, continent or coordinates")
			ok = false
		}
		if ok {
			out = append(out, n)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func parseDegrees(s string, limit float64) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < -limit || f > limit {
		return 0, false
	}
	return f, true
}

// DatabaseType is the database_type WriteMMDB records. geoip2-golang,
// gdnsd and PowerDNS read a database of this type with City lookups.
const DatabaseType = "GeoIP2-City"

// WriteMMDB writes nets as a MaxMind DB in GeoIP2 City layout (country
// iso_code, continent code and name, location latitude/longitude) to w.
// Reserved and private networks are allowed. Where networks overlap the more
// specific one wins, whatever the order of the rows. file names the CSV the
// networks came from, in errors and in the database's description.
func WriteMMDB(w io.Writer, file string, nets []Network) (int64, error) {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            DatabaseType,
		Description:             map[string]string{"en": "Verge geo database built from " + filepath.Base(file)},
		Languages:               []string{"en"},
		IPVersion:               6,
		RecordSize:              28,
		IncludeReservedNetworks: true,
	})
	if err != nil {
		return 0, fmt.Errorf("geo: new mmdb: %w", err)
	}
	sorted := slices.Clone(nets)
	slices.SortStableFunc(sorted, func(a, b Network) int { return a.Prefix.Bits() - b.Prefix.Bits() })
	for _, n := range sorted {
		ipn := &net.IPNet{IP: net.IP(n.Prefix.Addr().AsSlice()), Mask: net.CIDRMask(n.Prefix.Bits(), n.Prefix.Addr().BitLen())}
		if err := tree.Insert(ipn, record(n.Location)); err != nil {
			return 0, &CSVError{File: file, Line: n.Line, Column: 1, Field: "cidr", Msg: fmt.Sprintf("cannot insert %s: %v", n.Prefix, err)}
		}
	}
	written, err := tree.WriteTo(w)
	if err != nil {
		return written, fmt.Errorf("geo: write mmdb: %w", err)
	}
	return written, nil
}

func record(l Location) mmdbtype.Map {
	m := mmdbtype.Map{}
	if l.Country != "" {
		m["country"] = mmdbtype.Map{"iso_code": mmdbtype.String(l.Country)}
	}
	if l.Continent != "" {
		m["continent"] = mmdbtype.Map{
			"code":  mmdbtype.String(l.Continent),
			"names": mmdbtype.Map{"en": mmdbtype.String(continentNames[l.Continent])},
		}
	}
	if l.HasCoords {
		m["location"] = mmdbtype.Map{
			"latitude":  mmdbtype.Float64(l.Lat),
			"longitude": mmdbtype.Float64(l.Lon),
		}
	}
	return m
}
