package balance

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func backends(weights ...int) []Backend {
	out := make([]Backend, len(weights))
	for i, w := range weights {
		out[i] = Backend{Name: "b" + strconv.Itoa(i), Weight: w}
	}
	return out
}

func mustNew(t testing.TB, name string, bs []Backend, opts Options) Picker {
	t.Helper()
	p, err := New(name, bs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func all(int) bool { return true }

func except(down ...int) func(int) bool {
	return func(i int) bool { return !slices.Contains(down, i) }
}

func counts(p Picker, r *Request, n, picks int, ok func(int) bool) []int {
	c := make([]int, n)
	for i := 0; i < picks; i++ {
		c[p.Pick(r, ok)]++
	}
	return c
}

func TestNew(t *testing.T) {
	for _, name := range Names {
		if !Valid(name) {
			t.Errorf("Valid(%q) = false", name)
		}
		p := mustNew(t, name, backends(1, 2), Options{})
		if got := p.Pick(&Request{}, func(int) bool { return false }); got != -1 {
			t.Errorf("%s: Pick with nothing acceptable = %d", name, got)
		}
		if got := p.Pick(&Request{}, except(0)); got != 1 {
			t.Errorf("%s: Pick with only 1 acceptable = %d", name, got)
		}
	}
	cases := []struct {
		name string
		bs   []Backend
		want string
	}{
		{"random", backends(1), `unknown policy "random"`},
		{RoundRobinName, nil, "no backends"},
		{LeastConnName, backends(1, -1), "negative weight"},
		{URLHashName, []Backend{{Name: "x"}, {Name: "x"}}, "duplicate"},
	}
	for _, tc := range cases {
		if _, err := New(tc.name, tc.bs, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q, %v): %v, want %q", tc.name, tc.bs, err, tc.want)
		}
	}
	if Valid("random") {
		t.Error("Valid accepts an unknown name")
	}
}

func TestRoundRobin(t *testing.T) {
	p := mustNew(t, RoundRobinName, backends(1, 1, 1), Options{})
	var seq []int
	for i := 0; i < 6; i++ {
		seq = append(seq, p.Pick(nil, all))
	}
	if !slices.Equal(seq, []int{0, 1, 2, 0, 1, 2}) {
		t.Fatalf("sequence %v", seq)
	}
	if c := counts(p, nil, 3, 300, all); !slices.Equal(c, []int{100, 100, 100}) {
		t.Fatalf("300 picks over 3: %v", c)
	}
	if c := counts(p, nil, 3, 300, except(1)); c[1] != 0 || c[0]+c[2] != 300 {
		t.Fatalf("a down backend was picked: %v", c)
	}
}

func TestWeightedRoundRobin(t *testing.T) {
	p := mustNew(t, WeightedRoundRobinName, backends(5, 1, 1), Options{})
	var seq []int
	for i := 0; i < 7; i++ {
		seq = append(seq, p.Pick(nil, all))
	}
	// nginx's smooth sequence for 5, 1, 1: the heavy backend is spread out.
	if want := []int{0, 0, 1, 0, 2, 0, 0}; !slices.Equal(seq, want) {
		t.Fatalf("sequence %v, want %v", seq, want)
	}
	cases := []struct {
		weights []int
		ok      func(int) bool
		want    []int // picks per backend over one cycle of sum(eligible weights)
	}{
		{[]int{5, 1, 1}, all, []int{5, 1, 1}},
		{[]int{3, 2, 1}, all, []int{3, 2, 1}},
		{[]int{0, 0, 4}, all, []int{1, 1, 4}}, // zero means 1
		{[]int{10, 3, 7, 1}, all, []int{10, 3, 7, 1}},
		{[]int{3, 2, 1}, except(0), []int{0, 2, 1}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.weights), func(t *testing.T) {
			p := mustNew(t, WeightedRoundRobinName, backends(tc.weights...), Options{})
			cycle := 0
			for _, w := range tc.want {
				cycle += w
			}
			for round := 0; round < 5; round++ {
				if c := counts(p, nil, len(tc.weights), cycle, tc.ok); !slices.Equal(c, tc.want) {
					t.Fatalf("cycle %d: picks %v, want exactly %v", round, c, tc.want)
				}
			}
		})
	}
}

func TestLeastConn(t *testing.T) {
	p := mustNew(t, LeastConnName, backends(1, 1, 1), Options{}).(*LeastConn)
	p.Begin(0)
	p.Begin(0)
	p.Begin(1)
	for i := 0; i < 10; i++ {
		if got := p.Pick(nil, all); got != 2 {
			t.Fatalf("picked %d, want the idle backend 2", got)
		}
	}
	p.Begin(2)
	p.Begin(2)
	if got := p.Pick(nil, all); got != 1 {
		t.Fatalf("picked %d, want 1 (1 in flight against 2 and 2)", got)
	}
	if got := p.Pick(nil, except(1)); got != 0 && got != 2 {
		t.Fatalf("picked %d with 1 down", got)
	}
	p.Done(0)
	p.Done(0)
	if got := p.Pick(nil, all); got != 0 || p.InFlight(0) != 0 {
		t.Fatalf("picked %d after 0 went idle", got)
	}
	// Idle backends share: ties rotate.
	q := mustNew(t, LeastConnName, backends(1, 1, 1), Options{})
	if c := counts(q, nil, 3, 300, all); !slices.Equal(c, []int{100, 100, 100}) {
		t.Fatalf("idle backends: %v", c)
	}
	// Weighted: in flight relative to weight.
	w := mustNew(t, LeastConnName, backends(3, 1), Options{}).(*LeastConn)
	w.Begin(0)
	w.Begin(0)
	w.Begin(1)
	if got := w.Pick(nil, all); got != 0 {
		t.Fatalf("picked %d; backend 0 has 2/3 in flight, backend 1 has 1/1", got)
	}
}

// fakeClock is an injected clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time                      { return c.t }
func (c *fakeClock) add(d time.Duration)                 { c.t = c.t.Add(d) }
func newClock() *fakeClock                               { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func ms(n int) time.Duration                             { return time.Duration(n) * time.Millisecond }
func latencyOf(lat []time.Duration, i int) time.Duration { return lat[i] }

func TestLeastTimeConverges(t *testing.T) {
	clk := newClock()
	p := mustNew(t, LeastTimeName, backends(1, 1, 1), Options{Now: clk.now, Decay: 10 * time.Second}).(*LeastTime)
	lat := []time.Duration{ms(50), ms(10), ms(80)} // backend 1 is the fastest
	serve := func(rounds int) []int {
		c := make([]int, 3)
		for r := 0; r < rounds; r++ {
			i := p.Pick(nil, all)
			p.Begin(i)
			clk.add(latencyOf(lat, i))
			p.Observe(i, latencyOf(lat, i))
			p.Done(i)
			clk.add(ms(10)) // sequential requests, 10ms apart
			c[i]++
		}
		return c
	}
	first := serve(3)
	if !slices.Equal(first, []int{1, 1, 1}) {
		t.Fatalf("first picks %v: every backend should be sampled once", first)
	}
	c := serve(1000)
	t.Logf("1000 requests at 50/10/80 ms: picks %v", c)
	if c[1] < 950 {
		t.Fatalf("the fastest backend got %d of 1000", c[1])
	}
	if avg, ok := p.Average(1); !ok || avg < ms(10)-time.Microsecond || avg > ms(10)+time.Microsecond {
		t.Fatalf("average of backend 1 = %v, %v", avg, ok)
	}
	// The slow ones are retried now and then, not abandoned for good.
	if c[0] == 0 {
		t.Fatal("backend 0 never retried")
	}
	// Backend 1 turns slow: traffic moves to the next fastest.
	lat[1] = ms(200)
	c = serve(1000)
	t.Logf("after backend 1 slowed to 200ms: picks %v", c)
	if c[0] < 900 {
		t.Fatalf("backend 0 (now fastest) got %d of 1000", c[0])
	}
}

func TestLeastTimeInFlight(t *testing.T) {
	clk := newClock()
	p := mustNew(t, LeastTimeName, backends(1, 1), Options{Now: clk.now}).(*LeastTime)
	p.Observe(0, ms(10))
	p.Observe(1, ms(25))
	if got := p.Pick(nil, all); got != 0 {
		t.Fatalf("picked %d, want the faster 0", got)
	}
	// Three requests stuck on the fast one make it look slower than the other.
	p.Begin(0)
	p.Begin(0)
	p.Begin(0)
	if got := p.Pick(nil, all); got != 1 {
		t.Fatalf("picked %d, want 1 (10ms x 4 in flight > 25ms x 1)", got)
	}
	if _, ok := NewLeastTime([]int64{1}, 0, nil).Average(0); ok {
		t.Fatal("average before any sample")
	}
}

func TestHashPolicies(t *testing.T) {
	for _, name := range []string{IPHashName, URLHashName} {
		t.Run(name, func(t *testing.T) {
			p := mustNew(t, name, backends(1, 1, 1), Options{})
			req := func(i int) *Request {
				if name == IPHashName {
					return &Request{ClientIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Key: "same"}
				}
				return &Request{Key: "www.example.com/img/" + strconv.Itoa(i), ClientIP: "192.0.2.1"}
			}
			const n = 3000
			home := make([]int, n)
			c := make([]int, 3)
			for i := 0; i < n; i++ {
				home[i] = p.Pick(req(i), all)
				c[home[i]]++
				for j := 0; j < 3; j++ {
					if got := p.Pick(req(i), all); got != home[i] {
						t.Fatalf("request %d went to %d, then %d", i, home[i], got)
					}
				}
			}
			t.Logf("%d distinct %s inputs over 3 backends: %v", n, name, c)
			for i, v := range c {
				if v < n/4 || v > n*5/12 {
					t.Fatalf("backend %d got %d of %d", i, v, n)
				}
			}
			// Backend 2 down: only its inputs move; they return when it does.
			for i := 0; i < n; i++ {
				got := p.Pick(req(i), except(2))
				if home[i] != 2 && got != home[i] {
					t.Fatalf("input %d moved from %d to %d though its backend is up", i, home[i], got)
				}
				if got == 2 {
					t.Fatal("picked a down backend")
				}
				if back := p.Pick(req(i), all); back != home[i] {
					t.Fatalf("input %d did not return home", i)
				}
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	clk := &sync.Mutex{}
	now := time.Unix(0, 0)
	tick := func() time.Time { clk.Lock(); defer clk.Unlock(); now = now.Add(time.Millisecond); return now }
	for _, name := range Names {
		p := mustNew(t, name, backends(1, 2, 3), Options{Now: tick})
		tr, _ := p.(Tracker)
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &Request{Key: "k" + strconv.Itoa(g), ClientIP: "127.0.0." + strconv.Itoa(g)}
				for i := 0; i < 500; i++ {
					b := p.Pick(r, all)
					if b < 0 || b > 2 {
						t.Errorf("%s picked %d", name, b)
						return
					}
					if tr != nil {
						tr.Begin(b)
						tr.Observe(b, time.Duration(b+1)*time.Millisecond)
						tr.Done(b)
					}
				}
			}()
		}
		wg.Wait()
		if lc, ok := p.(*LeastConn); ok {
			for i := 0; i < 3; i++ {
				if lc.InFlight(i) != 0 {
					t.Errorf("in flight %d after all done", lc.InFlight(i))
				}
			}
		}
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	r := &Request{Key: "www.example.com/a.css", ClientIP: "203.0.113.9"}
	ok := except(1)
	for _, name := range Names {
		p := mustNew(t, name, backends(1, 2, 3), Options{})
		if n := testing.AllocsPerRun(100, func() { p.Pick(r, ok) }); n != 0 {
			t.Errorf("%s: Pick allocates %v times", name, n)
		}
	}
}

func FuzzPick(f *testing.F) {
	f.Add(uint8(4), "www.example.com/", "192.0.2.1", uint8(7))
	f.Add(uint8(5), "", "", uint8(0))
	f.Add(uint8(0), "\x00\xff", "::1", uint8(255))
	f.Fuzz(func(t *testing.T, policy uint8, key, ip string, upMask uint8) {
		name := Names[int(policy)%len(Names)]
		p := mustNew(t, name, backends(1, 2, 3, 1, 1), Options{})
		ok := func(i int) bool { return upMask&(1<<i) != 0 }
		got := p.Pick(&Request{Key: key, ClientIP: ip}, ok)
		if upMask&0x1f == 0 {
			if got != -1 {
				t.Fatalf("%s picked %d with nothing up", name, got)
			}
			return
		}
		if got < 0 || got >= 5 || !ok(got) {
			t.Fatalf("%s picked %d with mask %05b", name, got, upMask)
		}
	})
}

func BenchmarkPick(b *testing.B) {
	r := &Request{Key: "www.example.com/static/app.js", ClientIP: "198.51.100.23"}
	for _, n := range []int{3, 10} {
		ws := make([]int, n)
		for i := range ws {
			ws[i] = i%3 + 1
		}
		for _, name := range Names {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				p := mustNew(b, name, backends(ws...), Options{})
				if tr, ok := p.(Tracker); ok {
					// Give the learning policies history to weigh.
					for i := range ws {
						tr.Begin(i)
						tr.Observe(i, time.Duration(i+1)*time.Millisecond)
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					p.Pick(r, all)
				}
			})
		}
	}
}
