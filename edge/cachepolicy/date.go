package cachepolicy

import "time"

// ParseHTTPDate parses an HTTP-date (RFC 9110 section 5.6.7): IMF-fixdate,
// the obsolete RFC 850 form, or asctime. Day and month names and "GMT" are
// matched without regard to case; everything else must be exact (two-digit
// day and hour, single spaces, GMT only). RFC 850 two-digit years more than
// 50 years in the future are taken as the past century, relative to now.
func ParseHTTPDate(s string, now time.Time) (time.Time, bool) {
	if t, ok := parseIMF(s); ok {
		return t, true
	}
	if t, ok := parseRFC850(s, now); ok {
		return t, true
	}
	return parseAsctime(s)
}

var shortDays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
var longDays = []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
var months = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// "Sun, 06 Nov 1994 08:49:37 GMT"
func parseIMF(s string) (time.Time, bool) {
	if len(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25] != ' ' {
		return time.Time{}, false
	}
	if indexFold(shortDays, s[:3]) < 0 || !equalFold(s[26:], "gmt") {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	mon := indexFold(months, s[8:11])
	year, ok2 := digits(s[12:16])
	if !ok1 || !ok2 || mon < 0 {
		return time.Time{}, false
	}
	return clock(year, mon, day, s[17:25])
}

// "Sunday, 06-Nov-94 08:49:37 GMT"
func parseRFC850(s string, now time.Time) (time.Time, bool) {
	comma := -1
	for i := 0; i < len(s) && i < 10; i++ {
		if s[i] == ',' {
			comma = i
			break
		}
	}
	if comma < 0 || indexFold(longDays, s[:comma]) < 0 {
		return time.Time{}, false
	}
	r := s[comma:]
	// ", 06-Nov-94 08:49:37 GMT"
	if len(r) != 24 || r[1] != ' ' || r[4] != '-' || r[8] != '-' || r[11] != ' ' || r[20] != ' ' || !equalFold(r[21:], "gmt") {
		return time.Time{}, false
	}
	day, ok1 := digits(r[2:4])
	mon := indexFold(months, r[5:8])
	yy, ok2 := digits(r[9:11])
	if !ok1 || !ok2 || mon < 0 {
		return time.Time{}, false
	}
	century := now.UTC().Year() / 100 * 100
	year := century + yy
	if year > now.UTC().Year()+50 {
		year -= 100
	}
	return clock(year, mon, day, r[12:20])
}

// "Sun Nov  6 08:49:37 1994"
func parseAsctime(s string) (time.Time, bool) {
	if len(s) != 24 || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	if indexFold(shortDays, s[:3]) < 0 {
		return time.Time{}, false
	}
	mon := indexFold(months, s[4:7])
	d := s[8:10]
	if d[0] == ' ' {
		d = "0" + d[1:]
	}
	day, ok1 := digits(d)
	year, ok2 := digits(s[20:24])
	if mon < 0 || !ok1 || !ok2 {
		return time.Time{}, false
	}
	return clock(year, mon, day, s[11:19])
}

// clock checks "HH:MM:SS" and the calendar values and builds the time.
func clock(year, mon, day int, hms string) (time.Time, bool) {
	if len(hms) != 8 || hms[2] != ':' || hms[5] != ':' {
		return time.Time{}, false
	}
	h, ok1 := digits(hms[0:2])
	m, ok2 := digits(hms[3:5])
	sec, ok3 := digits(hms[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 60 || day < 1 || day > 31 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(mon+1), day, h, m, sec, 0, time.UTC)
	if t.Day() != day { // 31 Feb and friends
		return time.Time{}, false
	}
	return t, true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(s) > 0
}

func indexFold(list []string, s string) int {
	for i, v := range list {
		if equalFold(v, s) {
			return i
		}
	}
	return -1
}

// equalFold compares ASCII strings without regard to case.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
