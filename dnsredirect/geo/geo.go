// Package geo locates IP addresses with a MaxMind DB and measures the
// great-circle distance between two places.
//
// Open reads any GeoIP2 or GeoLite2 City or Country database (and the DB-IP
// databases in their compatible formats) through geoip2-golang. Lookup returns
// the country, the continent and, for City databases, the coordinates of an
// address, plus the network the answer holds for: every address in that
// network gets the same answer, which is what an EDNS Client Subnet scope
// needs and what a cache can key on.
//
// ParseCSV and WriteMMDB build such a database from "cidr,country,continent,
// lat,lon" rows, for private networks, tests and the demo topology.
package geo

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
)

// Location is what a database knows about an address. The zero Location
// means nothing is known.
type Location struct {
	Country   string  // ISO 3166-1 alpha-2 code, upper case ("DE"); "" when unknown
	Continent string  // two-letter continent code (AF AN AS EU NA OC SA); "" when unknown
	Lat, Lon  float64 // degrees; meaningful only when HasCoords
	HasCoords bool
}

// Known reports whether the location carries any information.
func (l Location) Known() bool { return l.Country != "" || l.Continent != "" || l.HasCoords }

// DB is an open MaxMind database. It is safe for concurrent use.
type DB struct {
	r    *geoip2.Reader
	name string
}

// Open opens the database at path. The error says whether the file is
// missing, unreadable, not a MaxMind DB, or a MaxMind DB without country or
// location data (an ASN database, say).
func Open(path string) (*DB, error) {
	// Opening the file first separates "missing" and "unreadable" from "not
	// a MaxMind DB" in the error.
	f, err := os.Open(path)
	if err != nil {
		if u := errors.Unwrap(err); u != nil {
			err = u
		}
		return nil, fmt.Errorf("geo: mmdb %s: %w", path, err)
	}
	f.Close()
	r, err := geoip2.Open(path)
	return check(path, r, err)
}

// OpenBytes opens a database held in memory (b must not change afterwards).
// name is used in errors.
func OpenBytes(name string, b []byte) (*DB, error) {
	r, err := geoip2.OpenBytes(b)
	return check(name, r, err)
}

func check(name string, r *geoip2.Reader, err error) (*DB, error) {
	if err != nil {
		var unknown geoip2.UnknownDatabaseTypeError
		if errors.As(err, &unknown) {
			if r != nil {
				r.Close()
			}
			return nil, fmt.Errorf("geo: mmdb %s: database type %q has no country or location data (want a GeoIP2/GeoLite2 City or Country database)", name, unknown.DatabaseType)
		}
		return nil, fmt.Errorf("geo: mmdb %s: not a MaxMind DB: %w", name, err)
	}
	db := &DB{r: r, name: name}
	// One lookup proves the search tree and data section are usable, so a
	// truncated file fails here rather than on the first query.
	if _, _, err := db.Lookup(netip.IPv4Unspecified()); err != nil {
		r.Close()
		return nil, fmt.Errorf("geo: mmdb %s: %w", name, err)
	}
	return db, nil
}

// Lookup returns what the database knows about a, and the network that
// answer covers. An address the database does not hold yields the zero
// Location and the largest network around a that it holds nothing for. The
// network is always of a's family; a must be a plain IPv4 or IPv6 address
// (IPv4-mapped IPv6 addresses are looked up as IPv4).
func (db *DB) Lookup(a netip.Addr) (Location, netip.Prefix, error) {
	a = a.Unmap()
	c, err := db.r.City(a)
	if err != nil {
		return Location{}, netip.Prefix{}, fmt.Errorf("geo: lookup %s in %s: %w", a, db.name, err)
	}
	loc := Location{Country: c.Country.ISOCode, Continent: c.Continent.Code}
	if c.Location.Latitude != nil && c.Location.Longitude != nil {
		lat, lon := *c.Location.Latitude, *c.Location.Longitude
		if validCoords(lat, lon) {
			loc.Lat, loc.Lon, loc.HasCoords = lat, lon, true
		}
	}
	return loc, familyPrefix(a, c.Traits.Network), nil
}

// familyPrefix returns p when it is a prefix of a's family holding a, and
// otherwise the prefix of a's family with p's length (capped at the family's
// size): an IPv4 lookup that ends above the IPv4 subtree of an IPv6 database
// comes back as "::/n", which still means "nothing below bit n".
func familyPrefix(a netip.Addr, p netip.Prefix) netip.Prefix {
	if p.IsValid() && p.Addr().Is4() == a.Is4() && p.Contains(a) {
		return p
	}
	bits := 0
	if p.IsValid() && p.Addr().Is4() == a.Is4() {
		bits = p.Bits()
	}
	out, err := a.Prefix(bits)
	if err != nil {
		out, _ = a.Prefix(0)
	}
	return out
}

// Metadata describes the open database for logs.
func (db *DB) Metadata() (dbType string, built time.Time, nodes uint) {
	m := db.r.Metadata()
	return m.DatabaseType, time.Unix(int64(m.BuildEpoch), 0).UTC(), m.NodeCount
}

// Close releases the database's memory map.
func (db *DB) Close() error { return db.r.Close() }

func validCoords(lat, lon float64) bool {
	return lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

// earthRadiusKm is the mean Earth radius (IUGG).
const earthRadiusKm = 6371.0088

// Distance returns the great-circle distance in kilometres between two
// points given in degrees (haversine formula).
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	p1, p2 := lat1*rad, lat2*rad
	dp := (lat2 - lat1) * rad
	dl := (lon2 - lon1) * rad
	h := math.Sin(dp/2)*math.Sin(dp/2) + math.Cos(p1)*math.Cos(p2)*math.Sin(dl/2)*math.Sin(dl/2)
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(math.Min(1, h)))
}
