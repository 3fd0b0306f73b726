// Package webhook turns signed push notifications from Git forges (GitHub, Gitea, Forgejo,
// Gogs, GitLab, or any sender using the generic format) into immediate refreshes of the
// configured repositories they name. A payload is proof that something changed, never a
// source of content: only its repository URLs and ref are read, and shipwatch then fetches
// from the URL it was configured with.
package webhook

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"
)

// Webhook results, the values of Metrics.ObserveWebhook's result.
const (
	ResultAccepted     = "accepted"
	ResultIgnored      = "ignored"
	ResultUnauthorized = "unauthorized"
	ResultTooLarge     = "too_large"
	ResultRateLimited  = "rate_limited"
	ResultBadRequest   = "bad_request"
	// ResultBusy is a request refused before its body was read because the bodies being
	// read already fill MaxPendingBytes.
	ResultBusy = "busy"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxBody    = 1 << 20
	DefaultFailures   = 10
	DefaultWindow     = time.Minute
	DefaultMaxClients = 10000
	// DefaultPendingBodies is how many bodies of MaxBody bytes may be read at once when
	// MaxPendingBytes is not set.
	DefaultPendingBodies = 8
)

// Repo is one configured repository that accepts webhooks.
type Repo struct {
	// Name is the configured name: the only thing logged or put in metrics.
	Name string
	// URL is the configured clone URL (https, ssh://, scp-like git@host:org/repo.git,
	// file://); payload URLs are compared with it after NormalizeURL.
	URL string
	// Secret reads the secret at each request, so that a rotated secret file takes effect
	// without a restart. Trailing CR/LF are ignored (files written by echo end in one). A
	// nil Secret, or one that returns an empty secret, means the repo accepts no webhook.
	Secret func() ([]byte, error)
}

// Target is what a verified push refreshes.
type Target interface {
	// RefreshRepo asks for an immediate pass of the apps on repo whose ref matches ref
	// ("refs/heads/main" or "refs/tags/v1"); it returns how many apps were triggered.
	RefreshRepo(repo, ref string) int
}

// Metrics records the outcome of each request on a known provider.
type Metrics interface {
	// ObserveWebhook counts one request; result is one of the Result constants.
	ObserveWebhook(provider, result string)
}

// Options configures a Handler. Zero values take the defaults named on each field.
type Options struct {
	// Repos are the repositories that accept webhooks.
	Repos []Repo
	// Target receives the refreshes. Required.
	Target Target
	// MaxBody is the largest body read, in bytes (DefaultMaxBody).
	MaxBody int64
	// MaxPendingBytes bounds the bytes of bodies being read and checked at once, across
	// clients (DefaultPendingBodies × MaxBody). Each request reserves its Content-Length
	// (MaxBody when it has none) before its body is read, and gets 503 when that does not fit.
	MaxPendingBytes int64
	// Metrics may be nil.
	Metrics Metrics
	// Logger may be nil.
	Logger *slog.Logger
	// Failures is how many failed requests (bad signature, body too large, malformed) a
	// client may make within Window before it gets 429 until the window ends
	// (DefaultFailures, DefaultWindow). A request is counted when it arrives, before its
	// body is read, and taken back when its signature matches: requests still being read
	// count too, so one address can never have more than Failures bodies in flight.
	Failures int
	// Window is the length of the fixed failure-counting window.
	Window time.Duration
	// MaxClients bounds how many client addresses are tracked (DefaultMaxClients).
	MaxClients int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type repoEntry struct {
	name   string
	key    string
	secret func() ([]byte, error)
}

// Handler serves POST /hooks/{provider}, where provider is github, gitea (also Forgejo and
// Gogs), gitlab or generic. It is safe for concurrent use.
//
// The client address used for rate limiting is the host part of r.RemoteAddr (its /64 for
// IPv6). X-Forwarded-For and similar headers are deliberately ignored: any client can set
// them, so trusting them would let an attacker pick its own bucket. Behind a proxy all
// clients share the proxy's bucket.
type Handler struct {
	repos   []repoEntry
	target  Target
	maxBody int64
	metrics Metrics
	log     *slog.Logger
	limit   *limiter
	pending *semaphore.Weighted
	now     func() time.Time
}

// New checks opts and returns a Handler.
func New(opts Options) (*Handler, error) {
	if opts.Target == nil {
		return nil, errors.New("webhook options: no target")
	}
	if opts.MaxBody < 0 || opts.MaxPendingBytes < 0 || opts.Failures < 0 || opts.Window < 0 || opts.MaxClients < 0 {
		return nil, errors.New("webhook options: negative limit")
	}
	h := &Handler{
		target:  opts.Target,
		maxBody: cmp.Or(opts.MaxBody, DefaultMaxBody),
		metrics: opts.Metrics,
		log:     opts.Logger,
		now:     opts.Now,
		limit: newLimiter(cmp.Or(opts.Failures, DefaultFailures), cmp.Or(opts.Window, DefaultWindow),
			cmp.Or(opts.MaxClients, DefaultMaxClients)),
	}
	h.pending = semaphore.NewWeighted(max(cmp.Or(opts.MaxPendingBytes, DefaultPendingBodies*h.maxBody), h.maxBody))
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	seen := make(map[string]bool, len(opts.Repos))
	for _, r := range opts.Repos {
		if r.Name == "" {
			return nil, errors.New("webhook options: repo without a name")
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("webhook options: repo %s listed twice", r.Name)
		}
		seen[r.Name] = true
		key, err := NormalizeURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("webhook options: repo %s: %w", r.Name, err)
		}
		h.repos = append(h.repos, repoEntry{name: r.Name, key: key, secret: r.Secret})
	}
	return h, nil
}

// ServeHTTP checks, in this order, before reading any of the body: the client's attempt
// budget (counted now, taken back only if the request proves itself), the declared body
// size, the presence of a signature, and room in the handler's body budget. Only then is
// the body read, its signature checked against every repo's secret, and the payload parsed.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("provider")
	p, ok := lookupProvider(name)
	if !ok {
		// No metric: the label would be whatever the client typed.
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, name, ResultBadRequest, http.StatusMethodNotAllowed)
		return
	}
	att, ok := h.limit.begin(ClientKey(r.RemoteAddr), h.now())
	if !ok {
		h.log.Debug("webhook rate limited", "action", ResultRateLimited)
		h.fail(w, name, ResultRateLimited, http.StatusTooManyRequests)
		return
	}
	// From here on the attempt stays counted unless the request proves itself.
	if r.ContentLength > h.maxBody {
		h.fail(w, name, ResultTooLarge, http.StatusRequestEntityTooLarge)
		return
	}
	cred, err := p.credential(r.Header)
	if err != nil {
		h.log.Warn("webhook rejected", "action", ResultUnauthorized, "err", err)
		h.fail(w, name, ResultUnauthorized, http.StatusUnauthorized)
		return
	}
	size := h.maxBody
	if r.ContentLength >= 0 {
		size = r.ContentLength
	}
	if !h.pending.TryAcquire(size) {
		h.limit.succeed(att) // the daemon is busy; that is not the client's failure
		w.Header().Set("Retry-After", "1")
		h.fail(w, name, ResultBusy, http.StatusServiceUnavailable)
		return
	}
	defer h.pending.Release(size)
	body, err := readBody(w, r, h.maxBody, size)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.fail(w, name, ResultTooLarge, http.StatusRequestEntityTooLarge)
			return
		}
		h.fail(w, name, ResultBadRequest, http.StatusBadRequest)
		return
	}
	if h.handle(w, name, p, r.Header, cred, body) {
		h.limit.succeed(att)
	}
}

// readBody reads at most limit bytes into a buffer sized for size up front, so that a body
// of known length is read without the buffer doubling as it grows.
func readBody(w http.ResponseWriter, r *http.Request, limit, size int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		return nil, fmt.Errorf("read webhook body: %w", err)
	}
	return buf.Bytes(), nil
}

// handle checks a body that was read and refreshes what it proves; it reports whether the
// request proved itself, so its attempt is not counted as a failure.
func (h *Handler) handle(w http.ResponseWriter, name string, p provider, header http.Header, cred credential, body []byte) bool {
	verified, err := h.verify(cred, body)
	if err != nil {
		h.log.Warn("webhook rejected", "action", ResultUnauthorized, "err", err)
		h.fail(w, name, ResultUnauthorized, http.StatusUnauthorized)
		return false
	}
	if !p.isPush(header) {
		h.accept(w, name, ResultIgnored, 0)
		return true
	}
	ev, err := p.parse(header, body)
	if err != nil {
		// The sender holds a secret; the error names only the field that failed.
		h.log.Warn("webhook payload invalid", "action", ResultBadRequest, "err", err)
		h.fail(w, name, ResultBadRequest, http.StatusBadRequest)
		return false
	}
	if ev.deleted {
		h.accept(w, name, ResultIgnored, 0)
		return true
	}
	triggered, matched := h.trigger(verified, ev)
	result := ResultIgnored
	if matched {
		result = ResultAccepted
	}
	h.accept(w, name, result, triggered)
	return true
}

var errNoSecretMatched = errors.New("no configured secret matches")

// verify returns the repos whose secret the request proves. Every repo with a secret is
// tried even after a match: repos may share a secret, and the payload is matched only
// against repos the sender has proved it may refresh.
func (h *Handler) verify(cred credential, body []byte) ([]repoEntry, error) {
	var ok []repoEntry
	for _, repo := range h.repos {
		if repo.secret == nil {
			continue
		}
		secret, err := repo.secret()
		if err != nil {
			h.log.Error("webhook secret unreadable", "repo", repo.name, "err", err)
			continue
		}
		secret = bytes.TrimRight(secret, "\r\n")
		if len(secret) == 0 {
			continue
		}
		if cred.matches(secret, body) {
			ok = append(ok, repo)
		}
	}
	if len(ok) == 0 {
		return nil, errNoSecretMatched
	}
	return ok, nil
}

// trigger refreshes the verified repos the push names. matched tells whether any did,
// triggered counts the apps the target started.
func (h *Handler) trigger(verified []repoEntry, ev push) (triggered int, matched bool) {
	named := make(map[string]bool, len(ev.urls))
	for _, u := range ev.urls {
		if key, err := NormalizeURL(u); err == nil {
			named[key] = true
		}
	}
	for _, repo := range verified {
		if !named[repo.key] {
			continue
		}
		matched = true
		n := h.target.RefreshRepo(repo.name, ev.ref)
		h.log.Info("webhook refresh", "repo", repo.name, "action", "refresh")
		triggered += n
	}
	return triggered, matched
}

// accept answers 202 with the same body shape whether or not anything matched, so a
// sender learns nothing about which repos exist beyond those its secret opens.
func (h *Handler) accept(w http.ResponseWriter, provider, result string, triggered int) {
	h.observe(provider, result)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "{\"triggered\":%d}\n", triggered)
}

// fail answers an error with only the status text. It counts nothing against the client:
// its attempt was counted when the request arrived. The connection is closed after the
// answer: otherwise net/http would first read (up to 256 KiB of) a body left unread, to
// reuse the connection, and a refusal would wait on whatever the client trickles.
func (h *Handler) fail(w http.ResponseWriter, provider, result string, status int) {
	w.Header().Set("Connection", "close")
	h.observe(provider, result)
	http.Error(w, http.StatusText(status), status)
}

func (h *Handler) observe(provider, result string) {
	if h.metrics != nil {
		h.metrics.ObserveWebhook(provider, result)
	}
}
