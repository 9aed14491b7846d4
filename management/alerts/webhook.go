package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WebhookOptions configure delivery.
type WebhookOptions struct {
	URL   string // required
	Token string // sent as a bearer token when set
	// Timeout bounds one attempt. Default 5s.
	Timeout time.Duration
	// MaxAttempts bounds the tries per notification. Default 8.
	MaxAttempts int
	// Backoff is the wait before the second attempt; each further wait
	// doubles, up to MaxBackoff. Defaults 1s and 1m.
	Backoff, MaxBackoff time.Duration
	// Queue bounds the notifications waiting; when full the oldest is
	// dropped. Default 1000.
	Queue int

	Client *http.Client // default: no proxy from the environment
	Now    func() time.Time
	// Sleep waits d or until ctx is done (tests record the waits instead).
	Sleep func(ctx context.Context, d time.Duration) error
	Log   *slog.Logger
	// Result, if set, is called after each notification with "delivered",
	// "failed" or "dropped", and after each failed attempt with "retry".
	Result func(result string)
}

// Notification is the JSON body posted for each transition.
type Notification struct {
	Version string    `json:"version"` // "1"
	Status  string    `json:"status"`  // firing or resolved
	Alert   Alert     `json:"alert"`
	SentAt  time.Time `json:"sent_at"`
}

// Webhook delivers notifications in order, one at a time, retrying each
// with exponential backoff (no jitter: one management, one receiver).
type Webhook struct {
	o WebhookOptions

	mu    sync.Mutex // guards queue
	queue []Alert
	wake  chan struct{}
}

// NewWebhook returns a webhook; Run delivers what Enqueue queues.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	if o.URL == "" {
		return nil, errors.New("alerts: webhook URL is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = max(time.Minute, o.Backoff)
	}
	if o.Queue <= 0 {
		o.Queue = 1000
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Result == nil {
		o.Result = func(string) {}
	}
	return &Webhook{o: o, wake: make(chan struct{}, 1)}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Enqueue queues a notification for a transition.
func (w *Webhook) Enqueue(a Alert) {
	w.mu.Lock()
	if len(w.queue) >= w.o.Queue {
		w.queue = w.queue[1:]
		w.o.Result("dropped")
		w.o.Log.Warn("alert webhook queue full: dropping the oldest notification")
	}
	w.queue = append(w.queue, a)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Pending is the number of queued notifications.
func (w *Webhook) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// Run delivers queued notifications until ctx is done.
func (w *Webhook) Run(ctx context.Context) {
	for {
		w.mu.Lock()
		var next *Alert
		if len(w.queue) > 0 {
			a := w.queue[0]
			w.queue = w.queue[1:]
			next = &a
		}
		w.mu.Unlock()
		if next == nil {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				continue
			}
		}
		if err := w.Deliver(ctx, *next); err != nil && ctx.Err() == nil {
			w.o.Log.Error("alert notification not delivered", "alert", next.ID, "state", next.State, "err", err)
		}
	}
}

// errPermanent marks an answer that retrying cannot change (a 4xx other
// than 408 and 429).
var errPermanent = errors.New("permanent")

// Deliver posts one notification, retrying failures with exponential
// backoff up to MaxAttempts.
func (w *Webhook) Deliver(ctx context.Context, a Alert) error {
	body, err := json.Marshal(Notification{Version: "1", Status: a.State, Alert: a, SentAt: w.o.Now().UTC()})
	if err != nil {
		return fmt.Errorf("alerts: webhook: %w", err)
	}
	wait := w.o.Backoff
	for attempt := 1; ; attempt++ {
		err = w.post(ctx, body, attempt)
		if err == nil {
			w.o.Result("delivered")
			return nil
		}
		if errors.Is(err, errPermanent) || attempt >= w.o.MaxAttempts || ctx.Err() != nil {
			w.o.Result("failed")
			return fmt.Errorf("alerts: webhook: gave up after %d attempts: %w", attempt, err)
		}
		w.o.Result("retry")
		w.o.Log.Warn("alert webhook attempt failed; retrying", "attempt", attempt, "wait", wait, "err", err)
		if err := w.o.Sleep(ctx, wait); err != nil {
			w.o.Result("failed")
			return fmt.Errorf("alerts: webhook: %w", err)
		}
		wait = min(wait*2, w.o.MaxBackoff)
	}
}

func (w *Webhook) post(ctx context.Context, body []byte, attempt int) error {
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "verge-management")
	req.Header.Set("Verge-Attempt", strconv.Itoa(attempt))
	if w.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+w.o.Token)
	}
	resp, err := w.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%s: %s: %w", resp.Status, strings.TrimSpace(string(msg)), errPermanent)
	default:
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
}
