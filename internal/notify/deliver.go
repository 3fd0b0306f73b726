package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Headers of the generic webhook.
const (
	HeaderEvent     = "X-Shipwatch-Event"
	HeaderDelivery  = "X-Shipwatch-Delivery"
	HeaderSignature = "X-Shipwatch-Signature-256"
)

// StatusError is a delivery the receiver answered with a non-2xx status.
type StatusError struct {
	Code int
}

// Error names the status; the response body is never included (a receiver may echo).
func (e *StatusError) Error() string {
	return fmt.Sprintf("receiver answered %d %s", e.Code, http.StatusText(e.Code))
}

// ErrGaveUp marks a delivery that failed after every retry was spent.
var ErrGaveUp = errors.New("gave up after retries")

// attemptError is the outcome of one failed attempt.
type attemptError struct {
	err       error
	retryable bool
	// after is the receiver's Retry-After, zero when it sent none.
	after time.Duration
}

// deliver sends ev to t, retrying as the policy allows. Its errors name the target and
// never contain the target's URL.
func (n *Notifier) deliver(ctx context.Context, t *target, ev *Event) error {
	var body []byte
	var err error
	if t.Kind == KindSlack {
		body, err = slackBody(ev)
	} else {
		body, err = webhookBody(ev)
	}
	if err != nil {
		return fmt.Errorf("notify target %s: %w", t.Name, err)
	}
	// One id for every attempt, so a receiver can discard a retry it already processed.
	delivery := rand.Text()
	for attempt := 0; ; attempt++ {
		ae := n.attempt(ctx, t, ev.Type, delivery, body)
		if ae == nil {
			return nil
		}
		if !ae.retryable {
			return fmt.Errorf("notify target %s: %w", t.Name, ae.err)
		}
		if attempt >= n.opts.Retries {
			return fmt.Errorf("notify target %s: %w (%d attempts): %w", t.Name, ErrGaveUp, attempt+1, ae.err)
		}
		if err := sleep(ctx, n.backoff(attempt, ae.after)); err != nil {
			return fmt.Errorf("notify target %s: %w", t.Name, err)
		}
	}
}

// backoff is the wait before retry attempt+1: the receiver's Retry-After when it sent
// one, else exponential from RetryBase with jitter so many shipwatch instances hitting
// one receiver do not retry in step. Both are capped at RetryMax.
func (n *Notifier) backoff(attempt int, after time.Duration) time.Duration {
	if after > 0 {
		return min(after, n.opts.RetryMax)
	}
	d := n.opts.RetryBase
	for range attempt {
		d *= 2
		if d >= n.opts.RetryMax {
			d = n.opts.RetryMax
			break
		}
	}
	// Equal jitter: half fixed, half random, so the wait still grows.
	half := d / 2
	return half + mrand.N(d-half+1)
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

// attempt makes one HTTP request.
func (n *Notifier) attempt(ctx context.Context, t *target, typ EventType, delivery string, body []byte) *attemptError {
	raw, err := t.URL()
	if err != nil {
		// The reader's error names its file, never the file's content.
		return &attemptError{err: fmt.Errorf("read URL: %w", err), retryable: true}
	}
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// url.Parse errors quote the URL: report none of it.
		return &attemptError{err: errors.New("URL is not a valid http(s) URL")}
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return &attemptError{err: errors.New("build request: invalid URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "shipwatch")
	if t.Kind == KindWebhook {
		req.Header.Set(HeaderEvent, string(typ))
		req.Header.Set(HeaderDelivery, delivery)
		if t.Secret != nil {
			key, err := t.Secret()
			if err != nil {
				return &attemptError{err: fmt.Errorf("read secret: %w", err), retryable: true}
			}
			req.Header.Set(HeaderSignature, "sha256="+sign(key, body))
		}
	}
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		return &attemptError{err: scrub(err, raw), retryable: true}
	}
	// Drain a little so the connection can be reused; the body itself is never reported
	// (a receiver may echo what it got).
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests || code >= 500:
		return &attemptError{err: &StatusError{Code: code}, retryable: true,
			after: retryAfter(resp.Header.Get("Retry-After"), n.opts.Now())}
	default:
		return &attemptError{err: &StatusError{Code: code}}
	}
}

// sign is the hex HMAC-SHA256 of body under key.
func sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// retryAfter parses a Retry-After value (delay seconds or HTTP date); zero when absent
// or unusable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 24*3600)) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0)
	}
	return 0
}

// redactedError keeps a transport error's meaning (errors.Is still finds a timeout or
// a refused connection) while its text can never show the URL.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// scrub drops the URL that net/http's *url.Error carries, and as a second line of
// defence replaces any remaining occurrence of the URL or its path in the text.
func scrub(err error, raw string) error {
	inner := err
	op := "send"
	if ue, ok := errors.AsType[*url.Error](err); ok {
		inner, op = ue.Err, ue.Op
	}
	msg := op + " request: " + inner.Error()
	if u, perr := url.Parse(raw); perr == nil {
		for _, s := range []string{raw, u.String(), u.EscapedPath(), u.Path, u.RawQuery} {
			if len(s) > 1 {
				msg = strings.ReplaceAll(msg, s, "[redacted]")
			}
		}
	}
	if msg != op+" request: "+inner.Error() {
		// The inner error itself held the URL: do not let Unwrap hand it out.
		inner = nil
	}
	return &redactedError{msg: msg, err: inner}
}
