package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PurgeRecord is one purge in the log. Acks is the caller's encoding of
// the nodes' answers (JSON), saved when the purge finishes.
type PurgeRecord struct {
	Seq      uint64
	Kind     string
	Value    string
	Soft     bool
	Created  time.Time
	Finished time.Time // zero while acks are outstanding
	Acks     []byte
}

// AppendPurge records a purge and returns its sequence number: one more
// than the largest ever assigned, even across restarts (the numbers are
// never reused, so nodes can tell which purges they missed).
func (s *Store) AppendPurge(ctx context.Context, kind, value string, soft bool, at time.Time) (uint64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO purges (kind, value, soft, created, finished, acks) VALUES (?, ?, ?, ?, 0, '[]')`,
		kind, value, soft, at.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: append purge: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("store: append purge: %w", err)
	}
	return uint64(id), nil
}

// RecordPurge records a purge numbered elsewhere (by the cluster's purge
// log), replacing a record under the same number.
func (s *Store) RecordPurge(ctx context.Context, seq uint64, kind, value string, soft bool, at time.Time) error {
	if seq == 0 || seq > 1<<62 {
		return fmt.Errorf("store: record purge: bad sequence number %d", seq)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO purges (seq, kind, value, soft, created, finished, acks) VALUES (?, ?, ?, ?, ?, 0, '[]')`,
		int64(seq), kind, value, soft, at.UnixNano()); err != nil {
		return fmt.Errorf("store: record purge %d: %w", seq, err)
	}
	return nil
}

// FinishPurge saves a purge's acks and when it finished.
func (s *Store) FinishPurge(ctx context.Context, seq uint64, finished time.Time, acks []byte) error {
	res, err := s.db.ExecContext(ctx, `UPDATE purges SET finished = ?, acks = ? WHERE seq = ?`, finished.UnixNano(), string(acks), i64(seq))
	if err != nil {
		return fmt.Errorf("store: finish purge %d: %w", seq, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: finish purge %d: %w", seq, ErrNotFound)
	}
	return nil
}

func scanPurge(sc interface{ Scan(...any) error }) (PurgeRecord, error) {
	var p PurgeRecord
	var seq, created, finished int64
	var acks string
	if err := sc.Scan(&seq, &p.Kind, &p.Value, &p.Soft, &created, &finished, &acks); err != nil {
		return p, err
	}
	p.Seq, p.Created, p.Acks = uint64(seq), time.Unix(0, created), []byte(acks)
	if finished != 0 {
		p.Finished = time.Unix(0, finished)
	}
	return p, nil
}

const purgeCols = "seq, kind, value, soft, created, finished, acks"

// Purge returns the purge numbered seq, or ErrNotFound.
func (s *Store) Purge(ctx context.Context, seq uint64) (PurgeRecord, error) {
	if seq == 0 || seq > 1<<62 {
		return PurgeRecord{}, ErrNotFound
	}
	p, err := scanPurge(s.db.QueryRowContext(ctx, "SELECT "+purgeCols+" FROM purges WHERE seq = ?", int64(seq)))
	if errors.Is(err, sql.ErrNoRows) {
		return p, ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("store: purge %d: %w", seq, err)
	}
	return p, nil
}

// Purges returns purges with a sequence number above after, oldest first,
// at most limit of them.
func (s *Store) Purges(ctx context.Context, after uint64, limit int) ([]PurgeRecord, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+purgeCols+" FROM purges WHERE seq > ? ORDER BY seq LIMIT ?", i64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("store: purges: %w", err)
	}
	defer rows.Close()
	var out []PurgeRecord
	for rows.Next() {
		p, err := scanPurge(rows)
		if err != nil {
			return nil, fmt.Errorf("store: purges: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// LastPurges returns the newest limit purges, newest first.
func (s *Store) LastPurges(ctx context.Context, limit int) ([]PurgeRecord, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+purgeCols+" FROM purges ORDER BY seq DESC LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("store: purges: %w", err)
	}
	defer rows.Close()
	var out []PurgeRecord
	for rows.Next() {
		p, err := scanPurge(rows)
		if err != nil {
			return nil, fmt.Errorf("store: purges: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// LastPurgeSeq is the largest sequence number assigned (0 for none).
func (s *Store) LastPurgeSeq(ctx context.Context) (uint64, error) {
	var seq sql.NullInt64
	if err := s.db.QueryRowContext(ctx, "SELECT MAX(seq) FROM purges").Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: last purge: %w", err)
	}
	return uint64(seq.Int64), nil
}
