// Package store is management's embedded SQL database (SQLite through the
// pure-Go modernc.org/sqlite driver): usage per property per minute, rolled
// up to hours after a configurable age; the intake's per-node cursors (the
// last counters accepted from each node instance), saved in the same
// transaction as the usage they produced, so a management restart neither
// loses nor double-counts a report; and the purge log's records.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned for a purge sequence number that is not stored.
var ErrNotFound = errors.New("store: not found")

// Store is the database. Its methods are safe for concurrent use; writes are
// serialized by the single connection.
type Store struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS usage_minute (
	start          INTEGER NOT NULL, -- unix seconds, a multiple of 60
	property       TEXT    NOT NULL,
	role           TEXT    NOT NULL,
	requests       INTEGER NOT NULL,
	hits           INTEGER NOT NULL,
	misses         INTEGER NOT NULL,
	bytes          INTEGER NOT NULL,
	upstream_bytes INTEGER NOT NULL,
	errors         INTEGER NOT NULL,
	PRIMARY KEY (property, role, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_hour (
	start          INTEGER NOT NULL, -- unix seconds, a multiple of 3600
	property       TEXT    NOT NULL,
	role           TEXT    NOT NULL,
	requests       INTEGER NOT NULL,
	hits           INTEGER NOT NULL,
	misses         INTEGER NOT NULL,
	bytes          INTEGER NOT NULL,
	upstream_bytes INTEGER NOT NULL,
	errors         INTEGER NOT NULL,
	PRIMARY KEY (property, role, start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_minute_start ON usage_minute (start);
CREATE TABLE IF NOT EXISTS cursors (
	node      TEXT    NOT NULL,
	instance  TEXT    NOT NULL,
	role      TEXT    NOT NULL,
	region    TEXT    NOT NULL,
	version   TEXT    NOT NULL,
	admin_url TEXT    NOT NULL,
	started   INTEGER NOT NULL, -- unix nanoseconds
	seq       INTEGER NOT NULL,
	at        INTEGER NOT NULL, -- unix nanoseconds, node clock
	seen      INTEGER NOT NULL, -- unix nanoseconds, management clock
	state     BLOB    NOT NULL,
	PRIMARY KEY (node, instance)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS purges (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT,
	kind     TEXT    NOT NULL,
	value    TEXT    NOT NULL,
	soft     INTEGER NOT NULL,
	created  INTEGER NOT NULL, -- unix nanoseconds
	finished INTEGER NOT NULL, -- 0 while acks are outstanding
	acks     TEXT    NOT NULL
);
`

// Open opens (creating if needed) the database at path. ":memory:" is an
// in-memory database (tests).
func Open(path string) (*Store, error) {
	dsn := path
	if path != ":memory:" {
		dsn = "file:" + (&url.URL{Path: path}).EscapedPath()
	}
	dsn += "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// One connection: SQLite serializes writers anyway, and an in-memory
	// database exists per connection.
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: schema: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers (for /healthz).
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Counts are usage counters.
type Counts struct {
	Requests      uint64 `json:"requests"`
	Hits          uint64 `json:"hits"`   // answered from cache (fresh or stale)
	Misses        uint64 `json:"misses"` // fetched from the next tier
	Bytes         uint64 `json:"bytes"`  // body bytes sent to clients
	UpstreamBytes uint64 `json:"upstream_bytes"`
	Errors        uint64 `json:"errors"` // 5xx responses
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Requests += o.Requests
	c.Hits += o.Hits
	c.Misses += o.Misses
	c.Bytes += o.Bytes
	c.UpstreamBytes += o.UpstreamBytes
	c.Errors += o.Errors
}

// IsZero reports whether every counter is zero.
func (c Counts) IsZero() bool { return c == Counts{} }

// Delta is usage to add to one property and role in one minute.
type Delta struct {
	Minute   time.Time // truncated to the minute (UTC)
	Property string
	Role     string
	Counts
}

// Cursor is the last report accepted from one node instance: what the
// next report's counters are compared with.
type Cursor struct {
	Node, Instance                  string
	Role, Region, Version, AdminURL string
	Started                         time.Time
	Seq                             uint64
	At                              time.Time // node clock
	Seen                            time.Time // management clock
	State                           []byte    // the cumulative counters, encoded by the caller
}

// Apply adds deltas to usage and saves cursors, in one transaction.
func (s *Store) Apply(ctx context.Context, deltas []Delta, cursors []Cursor) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: apply: %w", err)
	}
	defer tx.Rollback()
	if len(deltas) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO usage_minute
			(start, property, role, requests, hits, misses, bytes, upstream_bytes, errors)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (property, role, start) DO UPDATE SET
				requests = requests + excluded.requests, hits = hits + excluded.hits,
				misses = misses + excluded.misses, bytes = bytes + excluded.bytes,
				upstream_bytes = upstream_bytes + excluded.upstream_bytes, errors = errors + excluded.errors`)
		if err != nil {
			return fmt.Errorf("store: apply: %w", err)
		}
		defer st.Close()
		for _, d := range deltas {
			if d.Counts.IsZero() {
				continue
			}
			m := d.Minute.Unix()
			m -= mod(m, 60)
			if _, err := st.ExecContext(ctx, m, d.Property, d.Role, i64(d.Requests), i64(d.Hits), i64(d.Misses),
				i64(d.Bytes), i64(d.UpstreamBytes), i64(d.Errors)); err != nil {
				return fmt.Errorf("store: apply: %w", err)
			}
		}
	}
	if len(cursors) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO cursors
			(node, instance, role, region, version, admin_url, started, seq, at, seen, state)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (node, instance) DO UPDATE SET
				role = excluded.role, region = excluded.region, version = excluded.version,
				admin_url = excluded.admin_url, started = excluded.started, seq = excluded.seq,
				at = excluded.at, seen = excluded.seen, state = excluded.state`)
		if err != nil {
			return fmt.Errorf("store: apply: %w", err)
		}
		defer st.Close()
		for _, c := range cursors {
			if _, err := st.ExecContext(ctx, c.Node, c.Instance, c.Role, c.Region, c.Version, c.AdminURL,
				c.Started.UnixNano(), i64(c.Seq), c.At.UnixNano(), c.Seen.UnixNano(), c.State); err != nil {
				return fmt.Errorf("store: apply: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: apply: %w", err)
	}
	return nil
}

// Cursors returns every saved cursor, newest report first.
func (s *Store) Cursors(ctx context.Context) ([]Cursor, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, instance, role, region, version, admin_url, started, seq, at, seen, state
		FROM cursors ORDER BY seen DESC, node`)
	if err != nil {
		return nil, fmt.Errorf("store: cursors: %w", err)
	}
	defer rows.Close()
	var out []Cursor
	for rows.Next() {
		var c Cursor
		var started, seq, at, seen int64
		if err := rows.Scan(&c.Node, &c.Instance, &c.Role, &c.Region, &c.Version, &c.AdminURL, &started, &seq, &at, &seen, &c.State); err != nil {
			return nil, fmt.Errorf("store: cursors: %w", err)
		}
		c.Started, c.Seq, c.At, c.Seen = time.Unix(0, started), uint64(seq), time.Unix(0, at), time.Unix(0, seen)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: cursors: %w", err)
	}
	return out, nil
}

// PruneCursors deletes cursors of instances last seen before t. A report
// from such an instance would afterwards count from zero again, so t should
// lie well beyond how long a node keeps undelivered reports.
func (s *Store) PruneCursors(ctx context.Context, t time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM cursors WHERE seen < ?", t.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: prune cursors: %w", err)
	}
	return res.RowsAffected()
}

// Rollup moves every minute row of an hour that ends at or before before
// into the hourly table (adding to a row already there, for reports that
// arrived late) and returns how many minute rows it moved.
func (s *Store) Rollup(ctx context.Context, before time.Time) (int64, error) {
	cut := before.Unix()
	cut -= mod(cut, 3600)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: rollup: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO usage_hour
		(start, property, role, requests, hits, misses, bytes, upstream_bytes, errors)
		SELECT start - (start % 3600), property, role, SUM(requests), SUM(hits), SUM(misses), SUM(bytes), SUM(upstream_bytes), SUM(errors)
		FROM usage_minute WHERE start < ? GROUP BY 1, 2, 3
		ON CONFLICT (property, role, start) DO UPDATE SET
			requests = requests + excluded.requests, hits = hits + excluded.hits,
			misses = misses + excluded.misses, bytes = bytes + excluded.bytes,
			upstream_bytes = upstream_bytes + excluded.upstream_bytes, errors = errors + excluded.errors`, cut); err != nil {
		return 0, fmt.Errorf("store: rollup: %w", err)
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM usage_minute WHERE start < ?", cut)
	if err != nil {
		return 0, fmt.Errorf("store: rollup: %w", err)
	}
	n, _ := res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: rollup: %w", err)
	}
	return n, nil
}

// Steps a usage query may group by.
const (
	StepMinute = time.Minute
	StepHour   = time.Hour
	StepDay    = 24 * time.Hour
)

// MaxRows bounds the buckets one query may ask for ((To-From)/Step).
const MaxRows = 50000

// Query selects usage.
type Query struct {
	Property string   // "" for every property
	Roles    []string // nil for every role (summed)
	From, To time.Time
	Step     time.Duration // StepMinute, StepHour or StepDay
}

// Row is usage of one property in one bucket.
type Row struct {
	Start    time.Time
	Seconds  int64 // the bucket's length: Step, or an hour for minutes already rolled up
	Property string
	Counts
}

// Usage returns the usage rows of q, ordered by start then property. Rows
// cover [From, To): minute rows whose minute starts in the range and
// hourly rows whose hour starts in it.
func (s *Store) Usage(ctx context.Context, q Query) ([]Row, error) {
	step := int64(q.Step / time.Second)
	switch q.Step {
	case StepMinute, StepHour, StepDay:
	default:
		return nil, fmt.Errorf("store: usage: step must be a minute, an hour or a day, got %v", q.Step)
	}
	if !q.To.After(q.From) {
		return nil, errors.New("store: usage: to must be after from")
	}
	// Rows start on whole seconds: a start s lies in [From, To) exactly when
	// ceil(From) <= s < ceil(To). Flooring To instead would drop the
	// current minute for the first second of every minute.
	from, to := ceilUnix(q.From), ceilUnix(q.To)
	if (to-from)/step > MaxRows {
		return nil, fmt.Errorf("store: usage: %d buckets of %v; at most %d (use a larger step)", (to-from)/step, q.Step, MaxRows)
	}
	filter := " WHERE start >= ? AND start < ?"
	args := []any{from, to}
	if q.Property != "" {
		filter += " AND property = ?"
		args = append(args, q.Property)
	}
	if len(q.Roles) > 0 {
		filter += " AND role IN (?" + repeat(",?", len(q.Roles)-1) + ")"
		for _, r := range q.Roles {
			args = append(args, r)
		}
	}
	cols := "start, property, requests, hits, misses, bytes, upstream_bytes, errors"
	query := `SELECT start - (start % ?) AS bucket, property, MAX(res),
		SUM(requests), SUM(hits), SUM(misses), SUM(bytes), SUM(upstream_bytes), SUM(errors)
		FROM (SELECT 60 AS res, ` + cols + ` FROM usage_minute` + filter + `
		      UNION ALL SELECT 3600 AS res, ` + cols + ` FROM usage_hour` + filter + `)
		GROUP BY bucket, property ORDER BY bucket, property`
	all := append([]any{step}, args...)
	all = append(all, args...)
	rows, err := s.db.QueryContext(ctx, query, all...)
	if err != nil {
		return nil, fmt.Errorf("store: usage: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		var start, res int64
		var c [6]int64
		if err := rows.Scan(&start, &r.Property, &res, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]); err != nil {
			return nil, fmt.Errorf("store: usage: %w", err)
		}
		r.Start = time.Unix(start, 0).UTC()
		r.Seconds = max(step, res)
		r.Counts = Counts{Requests: uint64(c[0]), Hits: uint64(c[1]), Misses: uint64(c[2]), Bytes: uint64(c[3]), UpstreamBytes: uint64(c[4]), Errors: uint64(c[5])}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: usage: %w", err)
	}
	return out, nil
}

// ceilUnix is t in unix seconds, rounded up.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.After(time.Unix(s, 0)) {
		s++
	}
	return s
}

// Properties lists every property with usage, sorted.
func (s *Store) Properties(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT property FROM usage_minute UNION SELECT property FROM usage_hour ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("store: properties: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("store: properties: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

// mod is the non-negative remainder (times before 1970 stay in their bucket).
func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// i64 stores a counter; the intake bounds counters to 2^53, so it fits.
func i64(v uint64) int64 {
	if v > 1<<62 {
		return 1 << 62
	}
	return int64(v)
}
