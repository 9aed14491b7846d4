package scrubber

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vergecdn/verge/configs"
)

// intake is a test double of management's report intake: a real HTTP
// server on 127.0.0.1 that checks the bearer token and decodes the report.
type intake struct {
	srv      *httptest.Server
	token    string
	reports  chan AttackState
	failNext atomic.Int32 // answer this many requests with 503 first
	bad      atomic.Int32 // requests refused for a wrong token
}

func newIntake(t *testing.T) *intake {
	in := &intake{token: "s3cret-node-token", reports: make(chan AttackState, 16)}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/attacks" {
			http.Error(w, "not here", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+in.token {
			in.bad.Add(1)
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		if in.failNext.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var st AttackState
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		in.reports <- st
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(in.srv.Close)
	return in
}

// eventually waits for cond, which another goroutine makes true; the
// bound only guards against a hang.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition never became true")
		}
	}
}

// next waits for a report; the timeout only guards against a hang.
func (in *intake) next(t *testing.T) AttackState {
	t.Helper()
	select {
	case st := <-in.reports:
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("no report reached the intake")
	}
	return AttackState{}
}

func attackConfig(t *testing.T, in *intake) func(*Config) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(in.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		c.Limits.PerIP = Bucket{Rate: 100, Burst: 50}
		c.Limits.PerPrefix = Bucket{}
		a := &c.Attack
		a.Enabled = true
		a.Window = configs.Duration(10 * time.Second)
		a.RequestRate = 100
		a.LimitedShare = 0.5
		a.MinRequests = 50
		a.Cooldown = configs.Duration(30 * time.Second)
		a.Limits = Policy{Mode: ModePenaltyBox, PerIP: Bucket{Rate: 5, Burst: 2}, Penalty: configs.Duration(time.Minute)}
		a.Report = Report{URL: in.srv.URL + "/api/v1/attacks", TokenFile: tokenFile, Timeout: configs.Duration(5 * time.Second), Node: "scrubber-test-1"}
	}
}

// traffic sends n requests spread over the 10 s window from sources
// addresses, advancing the clock to the window's end.
func traffic(env *testEnv, n, sources int) {
	step := 10 * time.Second / time.Duration(n)
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%sources)})
		env.s.admit(a, env.s.nowNanos())
		env.clock.Advance(step)
	}
}

func TestAttackModeEntersReportsAndLeaves(t *testing.T) {
	in := newIntake(t)
	env := newTest(t, attackConfig(t, in))
	s := env.s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.runReports(ctx)

	// Window 1: 50 req/s from 50 sources: calm.
	traffic(env, 500, 50)
	s.evaluate(s.nowNanos())
	if s.UnderAttack() {
		t.Fatal("under attack after a calm window")
	}
	if got := testutil.ToFloat64(s.m.windowRate); got != 50 {
		t.Fatalf("window rate %v, want 50", got)
	}
	// Window 2: 200 req/s: over request_rate.
	traffic(env, 2000, 50)
	s.evaluate(s.nowNanos())
	if !s.UnderAttack() {
		t.Fatal("not under attack after a window at 200 req/s (threshold 100)")
	}
	if testutil.ToFloat64(s.m.underAttack) != 1 || testutil.ToFloat64(s.m.transitions.WithLabelValues("attack")) != 1 {
		t.Fatal("entry not in the metrics")
	}
	if !strings.Contains(env.logs.String(), "entering under-attack mode") {
		t.Fatalf("entry not logged: %s", env.logs.String())
	}
	st := in.next(t)
	if !st.UnderAttack || st.Node != "scrubber-test-1" || st.Policy != "attack" || st.RequestRate != 200 ||
		!strings.Contains(st.Reason, "request rate 200/s >= 100/s") || st.Window != 10 {
		t.Fatalf("entry report %+v", st)
	}
	if st.Since != env.clock.Now() || st.At != env.clock.Now() {
		t.Fatalf("entry report times %v %v, want %v", st.Since, st.At, env.clock.Now())
	}

	// Under attack the stricter penalty box applies: 5 r/s burst 2.
	a := netip.MustParseAddr("203.0.113.5")
	verdicts := []reason{}
	for i := 0; i < 4; i++ {
		r, _ := s.admit(a, s.nowNanos())
		verdicts = append(verdicts, r)
	}
	if verdicts[0] != rPass || verdicts[1] != rPass || verdicts[2] != rBoxed || verdicts[3] != rBoxed {
		t.Fatalf("under-attack verdicts %v", verdicts)
	}

	// Calm windows: still under attack until the cooldown (30 s) is over.
	for i, want := range []bool{true, true, false} {
		traffic(env, 100, 10)
		s.evaluate(s.nowNanos())
		if s.UnderAttack() != want {
			t.Fatalf("calm window %d: under attack %v, want %v", i+1, s.UnderAttack(), want)
		}
	}
	st = in.next(t)
	if st.UnderAttack || st.Policy != "normal" || !strings.Contains(st.Reason, "cooldown 30s") {
		t.Fatalf("exit report %+v", st)
	}
	if testutil.ToFloat64(s.m.underAttack) != 0 || testutil.ToFloat64(s.m.transitions.WithLabelValues("normal")) != 1 {
		t.Fatal("exit not in the metrics")
	}
	if !strings.Contains(env.logs.String(), "leaving under-attack mode") {
		t.Fatal("exit not logged")
	}
	// Normal limits are back: the same source gets its 50 burst.
	for i := 0; i < 50; i++ {
		if r, _ := s.admit(netip.MustParseAddr("203.0.113.99"), s.nowNanos()); r != rPass {
			t.Fatalf("normal limits after the attack, request %d: %v", i, r)
		}
	}
	// The reporter counts a report after the intake answered it.
	eventually(t, func() bool { return testutil.ToFloat64(s.m.reports.WithLabelValues("ok")) == 2 })
	if in.bad.Load() != 0 {
		t.Fatal("the reporter sent a wrong token")
	}
}

func TestAttackModeByLimitedShare(t *testing.T) {
	in := newIntake(t)
	env := newTest(t, func(c *Config) {
		attackConfig(t, in)(c)
		c.Attack.RequestRate = 0
		c.Limits.PerIP = Bucket{Rate: 1, Burst: 1}
		c.Attack.Limits.PerIP = Bucket{Rate: 1, Burst: 1}
	})
	s := env.s
	// 40 requests from one source, 39 refused: but under min_requests (50).
	traffic(env, 40, 1)
	s.evaluate(s.nowNanos())
	if s.UnderAttack() {
		t.Fatal("entered with fewer than min_requests")
	}
	// 100 requests, about 89 refused: over the share.
	traffic(env, 100, 1)
	s.evaluate(s.nowNanos())
	if !s.UnderAttack() {
		t.Fatalf("not under attack; share %v", testutil.ToFloat64(s.m.windowShare))
	}
	if st := s.AttackState(); !strings.Contains(st.Reason, "requests refused") || st.LimitedShare < 0.5 {
		t.Fatalf("state %+v", st)
	}
}

func TestWindowNotClosedEarly(t *testing.T) {
	in := newIntake(t)
	env := newTest(t, attackConfig(t, in))
	s := env.s
	for i := 0; i < 5000; i++ {
		s.admit(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), s.nowNanos())
	}
	env.clock.Advance(9 * time.Second)
	s.evaluate(s.nowNanos())
	if s.UnderAttack() {
		t.Fatal("evaluated before the window was over")
	}
	env.clock.Advance(time.Second)
	s.evaluate(s.nowNanos())
	if !s.UnderAttack() {
		t.Fatal("5000 requests in 10 s (500/s) did not trigger")
	}
}

func TestReportRetriesAndFailures(t *testing.T) {
	in := newIntake(t)
	env := newTest(t, attackConfig(t, in))
	s := env.s
	s.det.backoff = time.Millisecond
	in.failNext.Store(2) // two 503s, then accepted
	s.sendReport(context.Background(), AttackState{UnderAttack: true, Reason: "test"})
	if st := in.next(t); !st.UnderAttack || st.Reason != "test" {
		t.Fatalf("report after retries %+v", st)
	}
	in.failNext.Store(10)
	s.sendReport(context.Background(), AttackState{Reason: "lost"})
	if got := testutil.ToFloat64(s.m.reports.WithLabelValues("error")); got != 1 {
		t.Fatalf("failed report counted %v", got)
	}
	if !strings.Contains(env.logs.String(), "503 Service Unavailable: busy") {
		t.Fatalf("failure not logged with the intake's answer: %s", env.logs.String())
	}
	// A wrong token is the intake's 401, reported as an error.
	r := &HTTPReporter{URL: in.srv.URL + "/api/v1/attacks", Token: "wrong"}
	if err := r.ReportAttack(context.Background(), AttackState{}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestChallenge(t *testing.T) {
	for _, kind := range []string{ChallengeJS, ChallengeRedirect} {
		t.Run(kind, func(t *testing.T) {
			env := newTest(t, func(c *Config) {
				c.Attack.Enabled = true
				c.Attack.Challenge.Enabled = true
				c.Attack.Challenge.Kind = kind
				c.Lists.Allow = []string{"192.0.2.200"}
			})
			s := env.s
			h := s.Wrap(okHandler)
			get := func(addr, cookie, method string) *httptest.ResponseRecorder {
				r := httptest.NewRequest(method, "http://example.test/page?q=1", nil)
				r.RemoteAddr = addr
				if cookie != "" {
					r.Header.Set("Cookie", "other=1; "+cookie)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			// Not under attack: no challenge.
			if w := get("192.0.2.1:1", "", "GET"); w.Code != 200 {
				t.Fatalf("normal mode: %d", w.Code)
			}
			s.setPolicy(s.attack)
			w := get("192.0.2.1:1", "", "GET")
			var cookie string
			switch kind {
			case ChallengeJS:
				if w.Code != 503 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") ||
					w.Header().Get("Cache-Control") != "no-store" {
					t.Fatalf("js challenge: %d %v", w.Code, w.Header())
				}
				m := regexp.MustCompile(`document\.cookie="(verge_challenge=[A-Za-z0-9_-]+);`).FindStringSubmatch(w.Body.String())
				if m == nil {
					t.Fatalf("no cookie in the page: %s", w.Body.String())
				}
				cookie = m[1]
			case ChallengeRedirect:
				sc := w.Header().Get("Set-Cookie")
				if w.Code != 307 || w.Header().Get("Location") != "/page?q=1" || !strings.Contains(sc, "HttpOnly") {
					t.Fatalf("redirect challenge: %d %v", w.Code, w.Header())
				}
				cookie, _, _ = strings.Cut(sc, ";")
			}
			if w := get("192.0.2.1:2", cookie, "GET"); w.Code != 200 {
				t.Fatalf("with the cookie: %d", w.Code)
			}
			// Bound to the address.
			if w := get("192.0.2.2:1", cookie, "GET"); w.Code == 200 {
				t.Fatal("another address passed with the cookie")
			}
			// A tampered cookie fails.
			bad := cookie[:len(cookie)-2] + "AA"
			if bad == cookie {
				bad = cookie[:len(cookie)-2] + "BB"
			}
			if w := get("192.0.2.1:1", bad, "GET"); w.Code == 200 {
				t.Fatal("tampered cookie passed")
			}
			// Other methods are refused rather than challenged.
			if w := get("192.0.2.3:1", "", "POST"); w.Code != 403 {
				t.Fatalf("POST without cookie: %d", w.Code)
			}
			// Allow-listed sources skip the challenge.
			if w := get("192.0.2.200:1", "", "GET"); w.Code != 200 {
				t.Fatalf("allow-listed: %d", w.Code)
			}
			// The cookie expires with its TTL (1h).
			env.clock.Advance(61 * time.Minute)
			if w := get("192.0.2.1:1", cookie, "GET"); w.Code == 200 {
				t.Fatal("expired cookie passed")
			}
			if counter(t, env, "challenge_passed") != 1 || counter(t, env, "challenge") < 5 {
				t.Fatalf("counters passed %d challenged %d", counter(t, env, "challenge_passed"), counter(t, env, "challenge"))
			}
		})
	}
}

func TestChallengeSecretFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte(strings.Repeat("k", 40)), 0o600)
	mk := func() *challenger {
		c, err := newChallenger(Challenge{Kind: ChallengeJS, SecretFile: key, TTL: configs.Duration(time.Hour), Cookie: "c"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := netip.MustParseAddr("2001:db8::1")
	now := time.Unix(1_800_000_000, 0)
	// Two scrubbers sharing the key accept each other's cookies.
	if tok := mk().mint(a, now.Add(time.Hour)); !mk().verify(tok, a, now) {
		t.Fatal("a cookie minted with the shared key was refused")
	}
	os.WriteFile(key, []byte("short"), 0o600)
	if _, err := newChallenger(Challenge{SecretFile: key}); err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("short key: %v", err)
	}
}
