package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "usage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func TestApplyQueryRollup(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	var deltas []Delta
	var want Counts
	for m := 0; m < 150; m++ { // 2.5 hours
		for _, role := range []string{"edge", "hub"} {
			d := Delta{Minute: t0.Add(time.Duration(m)*time.Minute + 17*time.Second), Property: "shop", Role: role,
				Counts: Counts{Requests: uint64(m + 1), Hits: uint64(m), Misses: 1, Bytes: 1000, UpstreamBytes: 10, Errors: uint64(m % 2)}}
			deltas = append(deltas, d)
			if role == "edge" {
				want.Add(d.Counts)
			}
		}
	}
	deltas = append(deltas, Delta{Minute: t0, Property: "blog", Role: "edge", Counts: Counts{Requests: 5}})
	// The same minute twice adds up.
	deltas = append(deltas, Delta{Minute: t0, Property: "blog", Role: "edge", Counts: Counts{Requests: 2}})
	if err := s.Apply(ctx, deltas, nil); err != nil {
		t.Fatal(err)
	}
	total := func(q Query) (Counts, []Row) {
		t.Helper()
		rows, err := s.Usage(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var c Counts
		for _, r := range rows {
			c.Add(r.Counts)
		}
		return c, rows
	}
	q := Query{Property: "shop", Roles: []string{"edge"}, From: t0, To: t0.Add(3 * time.Hour), Step: StepMinute}
	got, rows := total(q)
	if got != want || len(rows) != 150 || rows[0].Seconds != 60 || !rows[1].Start.Equal(t0.Add(time.Minute)) {
		t.Fatalf("minute query: %+v (%d rows), want %+v", got, len(rows), want)
	}
	q.Step = StepHour
	if got, rows := total(q); got != want || len(rows) != 3 || rows[0].Requests != 60*61/2 {
		t.Fatalf("hour query: %+v %+v", got, rows)
	}
	if c, _ := total(Query{Property: "blog", From: t0, To: t0.Add(time.Minute), Step: StepMinute}); c.Requests != 7 {
		t.Fatalf("blog: %+v", c)
	}
	// A window that ends within the first second of a minute still holds
	// that minute; one that starts after a minute's first instant does not.
	if c, _ := total(Query{Property: "blog", From: t0.Add(-time.Hour), To: t0.Add(500 * time.Millisecond), Step: StepMinute}); c.Requests != 7 {
		t.Fatalf("blog to the first second of its minute: %+v", c)
	}
	if c, _ := total(Query{Property: "blog", From: t0.Add(time.Millisecond), To: t0.Add(time.Hour), Step: StepMinute}); c.Requests != 0 {
		t.Fatalf("blog from just after its minute: %+v", c)
	}

	// Roll up the first two hours; totals stay, resolution becomes an hour.
	n, err := s.Rollup(ctx, t0.Add(2*time.Hour+30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2*120+1 {
		t.Fatalf("rolled up %d minute rows, want %d", n, 2*120+1)
	}
	q.Step = StepMinute
	got, rows = total(q)
	if got != want || len(rows) != 2+30 || rows[0].Seconds != 3600 || rows[2].Seconds != 60 {
		t.Fatalf("after rollup: %+v, %d rows (%+v)", got, len(rows), rows[:3])
	}
	// A late report for a rolled-up hour lands in the minute table and the
	// next rollup adds it to the hour.
	if err := s.Apply(ctx, []Delta{{Minute: t0.Add(5 * time.Minute), Property: "shop", Role: "edge", Counts: Counts{Requests: 1000}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollup(ctx, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	want.Requests += 1000
	q.Step = StepDay
	if got, rows := total(q); got != want || len(rows) != 1 || rows[0].Seconds != 86400 {
		t.Fatalf("day after late rollup: %+v, want %+v", got, want)
	}
	// Every role summed.
	all, _ := total(Query{Property: "shop", From: t0, To: t0.Add(3 * time.Hour), Step: StepHour})
	if all.Requests != want.Requests+want.Requests-1000 {
		t.Fatalf("all roles: %d", all.Requests)
	}
	props, err := s.Properties(ctx)
	if err != nil || len(props) != 2 || props[0] != "blog" {
		t.Fatalf("properties %v %v", props, err)
	}
}

func TestUsageQueryErrors(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for _, q := range []Query{
		{From: t0, To: t0, Step: StepMinute},
		{From: t0, To: t0.Add(time.Hour), Step: time.Second},
		{From: t0, To: t0.Add(24 * 365 * time.Hour), Step: StepMinute},
	} {
		if _, err := s.Usage(ctx, q); err == nil {
			t.Errorf("%+v: no error", q)
		}
	}
}

func TestCursorsPersist(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c := Cursor{Node: "e1", Instance: "abc", Role: "edge", Region: "eu", Version: "v1", AdminURL: "http://127.0.0.1:1",
		Started: t0, Seq: 7, At: t0.Add(time.Minute), Seen: t0.Add(time.Minute + time.Second), State: []byte(`{"x":1}`)}
	if err := s.Apply(ctx, nil, []Cursor{c}); err != nil {
		t.Fatal(err)
	}
	c.Seq = 8
	if err := s.Apply(ctx, nil, []Cursor{c}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Cursors(ctx)
	if err != nil || len(got) != 1 || got[0].Seq != 8 || !got[0].Started.Equal(t0) || string(got[0].State) != `{"x":1}` {
		t.Fatalf("cursors %+v %v", got, err)
	}
	if n, err := s.PruneCursors(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("prune %d %v", n, err)
	}
}

func TestPurgeLogSequence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		seq, err := s.AppendPurge(ctx, "url", "http://a.test/x", i == 2, t0)
		if err != nil || seq != uint64(i) {
			t.Fatalf("append %d: %d %v", i, seq, err)
		}
	}
	if err := s.FinishPurge(ctx, 2, t0.Add(time.Second), []byte(`[{"node":"e1"}]`)); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishPurge(ctx, 99, t0, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finish unknown: %v", err)
	}
	s.Close()
	// Numbers are never reused after a restart.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if seq, err := s.AppendPurge(ctx, "all", "", false, t0); err != nil || seq != 4 {
		t.Fatalf("after reopen: %d %v", seq, err)
	}
	// A number assigned by an external log is kept, and later appends continue past it.
	if err := s.RecordPurge(ctx, 10, "tag", "t", false, t0); err != nil {
		t.Fatal(err)
	}
	if seq, err := s.AppendPurge(ctx, "all", "", false, t0); err != nil || seq != 11 {
		t.Fatalf("after record: %d %v", seq, err)
	}
	if err := s.RecordPurge(ctx, 0, "tag", "t", false, t0); err == nil {
		t.Fatal("seq 0 recorded")
	}
	p, err := s.Purge(ctx, 2)
	if err != nil || !p.Soft || p.Finished.IsZero() || string(p.Acks) != `[{"node":"e1"}]` {
		t.Fatalf("purge 2: %+v %v", p, err)
	}
	if _, err := s.Purge(ctx, 50); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown purge: %v", err)
	}
	list, err := s.Purges(ctx, 1, 2)
	if err != nil || len(list) != 2 || list[0].Seq != 2 {
		t.Fatalf("purges after 1: %+v %v", list, err)
	}
	last, err := s.LastPurges(ctx, 10)
	if err != nil || len(last) != 6 || last[0].Seq != 11 {
		t.Fatalf("last purges %+v %v", last, err)
	}
	if n, err := s.LastPurgeSeq(ctx); err != nil || n != 11 {
		t.Fatalf("last seq %d %v", n, err)
	}
}
