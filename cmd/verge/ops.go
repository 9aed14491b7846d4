package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vergecdn/verge/management"
)

// The operator commands talk to management's API: the address and the
// operator token come from flags or the environment.
const (
	envManageURL = "VERGE_MANAGE_URL" // management's API base URL
	envToken     = "VERGE_TOKEN"      // the operator token itself
	envTokenFile = "VERGE_TOKEN_FILE" // a file holding it
	defaultMgmt  = "http://127.0.0.1:9300"
	pollEvery    = 200 * time.Millisecond // progress polling
)

// opsClient calls management's operator API.
type opsClient struct {
	base  string
	token string
	hc    *http.Client
}

// opsFlags adds -manage and -token-file to fs.
func opsFlags(fs *flag.FlagSet) (manageURL, tokenFile *string) {
	manageURL = fs.String("manage", "", "management's API `URL` (default $"+envManageURL+", else "+defaultMgmt+")")
	tokenFile = fs.String("token-file", "", "`file` holding the operator token (default $"+envTokenFile+", else the token in $"+envToken+")")
	return
}

func newOpsClient(manageURL, tokenFile string) (*opsClient, error) {
	base := manageURL
	if base == "" {
		base = os.Getenv(envManageURL)
	}
	if base == "" {
		base = defaultMgmt
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("management URL must be http(s)://host:port, got %q", base)
	}
	if tokenFile == "" {
		tokenFile = os.Getenv(envTokenFile)
	}
	token := ""
	if tokenFile != "" {
		if token, err = management.ReadToken("", tokenFile); err != nil {
			return nil, err
		}
	} else {
		token = strings.TrimSpace(os.Getenv(envToken))
	}
	if token == "" {
		return nil, fmt.Errorf("need the operator token: -token-file FILE, $%s or $%s", envTokenFile, envToken)
	}
	return &opsClient{base: strings.TrimSuffix(base, "/") + "/api/v1", token: token,
		hc: &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}}, nil
}

// call sends a request; a non-2xx answer is an error carrying the API's reason.
func (c *opsClient) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("management unreachable: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e management.APIError
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s", resp.Status)
	}
	return out, nil
}

func (c *opsClient) get(ctx context.Context, path string, v any) error {
	b, err := c.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// opsSetup parses flags and builds the client; ok false means exit with code.
func opsSetup(fs *flag.FlagSet, e env, manageURL, tokenFile *string) (*opsClient, int, bool) {
	if code, ok := parseFlags(fs, e.args); !ok {
		return nil, code, false
	}
	c, err := newOpsClient(*manageURL, *tokenFile)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
		return nil, exitUsage, false
	}
	return c, 0, true
}

// ackWatcher prints each node's ack once, as it arrives.
type ackWatcher struct {
	w       io.Writer
	printed map[string]bool
	line    func(management.NodeAck) string
}

func (a *ackWatcher) show(acks []management.NodeAck) {
	for _, n := range acks {
		if n.State == management.AckPending || a.printed[n.Node] {
			continue
		}
		a.printed[n.Node] = true
		state := "ok    "
		if n.State != management.AckOK {
			state = "FAILED"
		}
		fmt.Fprintf(a.w, "  %s  %-20s %-10s %s\n", state, n.Node, n.Region, a.line(n))
	}
}

// pendingNodes names the nodes that have not answered.
func pendingNodes(acks []management.NodeAck) []string {
	var out []string
	for _, n := range acks {
		if n.State == management.AckPending {
			out = append(out, n.Node)
		}
	}
	return out
}

func failedNodes(acks []management.NodeAck) []string {
	var out []string
	for _, n := range acks {
		if n.State == management.AckFailed {
			out = append(out, n.Node)
		}
	}
	return out
}

// follow polls path until the job finishes or timeout, printing acks, and
// returns the exit code: 0 when every node acknowledged.
func follow[T any](ctx context.Context, e env, c *opsClient, what, path string, timeout time.Duration, acks func(T) (string, []management.NodeAck), w *ackWatcher) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var st T
	for {
		if err := c.get(ctx, path, &st); err != nil {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(e.stderr, "%s: %v\n", what, err)
			return exitFailure
		}
		state, list := acks(st)
		w.show(list)
		if state != management.StateRunning {
			if failed := failedNodes(list); len(failed) > 0 {
				fmt.Fprintf(e.stdout, "%s failed: %d of %d nodes acknowledged; failed: %s\n", what, len(list)-len(failed), len(list), strings.Join(failed, ", "))
				return exitFailure
			}
			fmt.Fprintf(e.stdout, "%s done: all %d nodes acknowledged\n", what, len(list))
			return exitOK
		}
		select {
		case <-ctx.Done():
		case <-t.C:
			continue
		}
		break
	}
	_, list := acks(st)
	fmt.Fprintf(e.stdout, "%s: no ack within %s from: %s\n", what, timeout, strings.Join(pendingNodes(list), ", "))
	return exitFailure
}

// runPurge is "verge purge": purge on every hub and edge, with progress.
func runPurge(ctx context.Context, e env) int {
	fs := newFlags("purge", e)
	u := fs.String("url", "", "purge one `URL` (all its variants)")
	prefix := fs.String("prefix", "", "purge every URL under this `URL` prefix")
	tag := fs.String("tag", "", "purge every object with this surrogate `key` (Surrogate-Key / Cache-Tag)")
	host := fs.String("host", "", "purge every object of this `host`")
	all := fs.Bool("all", false, "purge everything")
	soft := fs.Bool("soft", false, "mark stale (revalidate) instead of deleting")
	timeout := fs.Duration("timeout", 35*time.Second, "fail if a node has not acknowledged by then")
	manageURL, tokenFile := opsFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: verge purge (-url URL | -prefix URL | -tag KEY | -host HOST | -all) [-soft] [-timeout D]

Purges through management on every hub and edge and shows each node's ack.
Exits 1 when a node failed or did not acknowledge within -timeout.`)
		fs.PrintDefaults()
	}
	c, code, ok := opsSetup(fs, e, manageURL, tokenFile)
	if !ok {
		return code
	}
	var req struct {
		Kind  string `json:"kind"`
		Value string `json:"value,omitempty"`
		Soft  bool   `json:"soft,omitempty"`
	}
	n := 0
	for _, k := range []struct {
		kind string
		v    string
	}{{"url", *u}, {"prefix", *prefix}, {"tag", *tag}, {"host", *host}} {
		if k.v != "" {
			req.Kind, req.Value = k.kind, k.v
			n++
		}
	}
	if *all {
		req.Kind = "all"
		n++
	}
	if n != 1 {
		fmt.Fprintln(e.stderr, "verge purge: give exactly one of -url, -prefix, -tag, -host, -all")
		return exitUsage
	}
	req.Soft = *soft
	b, err := c.call(ctx, http.MethodPost, "/purge", req)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge purge: %v\n", err)
		return exitFailure
	}
	var st management.PurgeStatus
	if err := json.Unmarshal(b, &st); err != nil {
		fmt.Fprintf(e.stderr, "verge purge: %v\n", err)
		return exitFailure
	}
	mode := "hard"
	if st.Soft {
		mode = "soft"
	}
	what := string(st.Kind)
	if st.Value != "" {
		what += " " + st.Value
	}
	fmt.Fprintf(e.stdout, "purge #%d: %s (%s) -> %d nodes\n", st.ID, what, mode, len(st.Nodes))
	w := &ackWatcher{w: e.stdout, printed: map[string]bool{}, line: func(n management.NodeAck) string {
		if n.State != management.AckOK {
			return n.Error
		}
		m := 0
		if n.Matched != nil {
			m = *n.Matched
		}
		return fmt.Sprintf("matched %-6d %.1f ms", m, float64(n.Took)/1e6)
	}}
	return follow(ctx, e, c, fmt.Sprintf("purge #%d", st.ID), fmt.Sprintf("/purge/%d", st.ID), *timeout,
		func(s management.PurgeStatus) (string, []management.NodeAck) { return s.State, s.Nodes }, w)
}

// urlList collects repeated -url flags.
type urlList []string

func (l *urlList) String() string     { return strings.Join(*l, " ") }
func (l *urlList) Set(s string) error { *l = append(*l, s); return nil }

// runPreload is "verge preload": fetch URLs into every edge's cache.
func runPreload(ctx context.Context, e env) int {
	fs := newFlags("preload", e)
	var urls urlList
	fs.Var(&urls, "url", "a `URL` to preload (repeat the flag for more)")
	file := fs.String("file", "", "`file` with one URL per line (# starts a comment)")
	roles := fs.String("roles", "", "node `roles` to preload on, comma-separated: edge, hub (default: management's preload.roles)")
	timeout := fs.Duration("timeout", 6*time.Minute, "fail if a node has not answered by then")
	manageURL, tokenFile := opsFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: verge preload (-url URL ... | -file FILE) [-roles edge,hub] [-timeout D]

Each node fetches the URLs through its cache (an edge fills its hub on the
way). Shows each node's result; exits 1 when a node failed a URL or did not
answer within -timeout.`)
		fs.PrintDefaults()
	}
	c, code, ok := opsSetup(fs, e, manageURL, tokenFile)
	if !ok {
		return code
	}
	if *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			fmt.Fprintf(e.stderr, "verge preload: %v\n", err)
			return exitUsage
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line != "" && !strings.HasPrefix(line, "#") {
				urls = append(urls, line)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			fmt.Fprintf(e.stderr, "verge preload: %s: %v\n", *file, err)
			return exitUsage
		}
	}
	if len(urls) == 0 {
		fmt.Fprintln(e.stderr, "verge preload: give -url URL (repeatable) or -file FILE")
		return exitUsage
	}
	req := management.PreloadRequest{URLs: urls}
	if *roles != "" {
		req.Roles = strings.Split(*roles, ",")
	}
	b, err := c.call(ctx, http.MethodPost, "/preload", req)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge preload: %v\n", err)
		if strings.Contains(err.Error(), "400") {
			return exitUsage
		}
		return exitFailure
	}
	var st management.PreloadStatus
	if err := json.Unmarshal(b, &st); err != nil {
		fmt.Fprintf(e.stderr, "verge preload: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "preload #%d: %d URLs -> %d nodes (%s)\n", st.ID, len(st.URLs), len(st.Nodes), strings.Join(st.Roles, ", "))
	w := &ackWatcher{w: e.stdout, printed: map[string]bool{}, line: func(n management.NodeAck) string {
		s := fmt.Sprintf("%d URLs, %s, %.1f ms", n.URLs, humanBytes(float64(n.Bytes)), float64(n.Took)/1e6)
		if n.Error != "" {
			s += ": " + n.Error
		}
		return s
	}}
	return follow(ctx, e, c, fmt.Sprintf("preload #%d", st.ID), fmt.Sprintf("/preload/%d", st.ID), *timeout,
		func(s management.PreloadStatus) (string, []management.NodeAck) { return s.State, s.Nodes }, w)
}

func humanBytes(v float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for v >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

func ratio(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100**r)
}

func age(s *float64) string {
	if s == nil {
		return "never"
	}
	return (time.Duration(*s) * time.Second).String() + " ago"
}

// runStatus is "verge status": the fleet by region, and active alerts.
func runStatus(ctx context.Context, e env) int {
	fs := newFlags("status", e)
	asJSON := fs.Bool("json", false, "print the API's JSON (nodes and alerts)")
	manageURL, tokenFile := opsFlags(fs)
	c, code, ok := opsSetup(fs, e, manageURL, tokenFile)
	if !ok {
		return code
	}
	var o management.Overview
	var alerts struct {
		Active []struct {
			ID, Severity, Summary string
			StartsAt              time.Time `json:"starts_at"`
		} `json:"active"`
	}
	if err := c.get(ctx, "/nodes", &o); err != nil {
		fmt.Fprintf(e.stderr, "verge status: %v\n", err)
		return exitFailure
	}
	if err := c.get(ctx, "/alerts", &alerts); err != nil {
		fmt.Fprintf(e.stderr, "verge status: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"nodes": o, "alerts": alerts})
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tNODE\tROLE\tHEALTH\tREQ/S\tHIT\tBANDWIDTH\tVERSION\tLAST REPORT")
	for _, n := range o.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\t%s/s\t%s\t%s\n", n.Region, n.Name, n.Role, n.Health,
			n.RequestsPerSecond, ratio(n.HitRatio), humanBytes(n.BytesPerSecond), n.Version, age(n.LastReportAge))
	}
	tw.Flush()
	roles := make([]string, 0, len(o.Totals))
	for r := range o.Totals {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		t := o.Totals[r]
		fmt.Fprintf(e.stdout, "%s: %d/%d up, %.1f req/s, hit ratio %s, %s/s\n", r, t.Up, t.Nodes, t.RequestsPerSecond, ratio(t.HitRatio), humanBytes(t.BytesPerSecond))
	}
	if len(alerts.Active) == 0 {
		fmt.Fprintln(e.stdout, "alerts: none")
	} else {
		fmt.Fprintf(e.stdout, "alerts: %d firing\n", len(alerts.Active))
		for _, a := range alerts.Active {
			fmt.Fprintf(e.stdout, "  [%s] %s: %s (since %s)\n", a.Severity, a.ID, a.Summary, a.StartsAt.Format(time.RFC3339))
		}
	}
	return exitOK
}

// runUsage is "verge usage": usage per property as a table, JSON or CSV.
func runUsage(ctx context.Context, e env) int {
	fs := newFlags("usage", e)
	property := fs.String("property", "", "one `property` (default: all)")
	role := fs.String("role", "", "`role`: edge (client traffic, the default), hub or all")
	from := fs.String("from", "", "start `time` (RFC 3339 or unix seconds; default 24h before -to)")
	to := fs.String("to", "", "end `time` (default now)")
	step := fs.String("step", "", "bucket: minute, hour (default) or day")
	format := fs.String("format", "table", "output: table, json or csv")
	manageURL, tokenFile := opsFlags(fs)
	c, code, ok := opsSetup(fs, e, manageURL, tokenFile)
	if !ok {
		return code
	}
	if *format != "table" && *format != "json" && *format != "csv" {
		fmt.Fprintf(e.stderr, "verge usage: -format: want table, json or csv, got %q\n", *format)
		return exitUsage
	}
	q := url.Values{}
	for k, v := range map[string]string{"property": *property, "role": *role, "from": *from, "to": *to, "step": *step} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *format != "table" {
		q.Set("format", *format)
	}
	b, err := c.call(ctx, http.MethodGet, "/usage?"+q.Encode(), nil)
	if err != nil {
		fmt.Fprintf(e.stderr, "verge usage: %v\n", err)
		if strings.Contains(err.Error(), "400") {
			return exitUsage
		}
		return exitFailure
	}
	if *format != "table" {
		e.stdout.Write(b)
		return exitOK
	}
	var a management.UsageAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		fmt.Fprintf(e.stderr, "verge usage: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(e.stdout, "usage (%s) from %s to %s by %s\n", a.Role, a.From.Format(time.RFC3339), a.To.Format(time.RFC3339), a.Step)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "START\tPROPERTY\tREQUESTS\tHITS\tHIT RATIO\tBYTES\t5XX\t")
	for _, r := range a.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t\n", r.Start.Format("2006-01-02 15:04"), r.Property, r.Requests, r.Hits, ratio(r.HitRatio), r.Bytes, r.Errors)
	}
	t := a.Totals
	var hr *float64
	if t.Hits+t.Misses > 0 {
		v := float64(t.Hits) / float64(t.Hits+t.Misses)
		hr = &v
	}
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%s\t%d\t%d\t\n", t.Requests, t.Hits, ratio(hr), t.Bytes, t.Errors)
	tw.Flush()
	return exitOK
}
