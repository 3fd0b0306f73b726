package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/shipwatch/shipwatch/drivers/docker"
	"github.com/shipwatch/shipwatch/internal/testdaemon"
	"github.com/shipwatch/shipwatch/internal/testgit"
	"github.com/shipwatch/shipwatch/internal/testimage"
	"github.com/shipwatch/shipwatch/internal/testpoll"
	"github.com/shipwatch/shipwatch/internal/testproject"
	"github.com/shipwatch/shipwatch/reconciler"
)

// shipwatchBin is the daemon binary, built once by TestMain when a latency benchmark is
// selected and only read afterwards.
var shipwatchBin string

// Polling periods. The 5 ms metric poll bounds the measurement error of drift detection.
const (
	metricPoll = 5 * time.Millisecond
	settlePoll = 50 * time.Millisecond
	quietFor   = time.Second
	opTimeout  = 30 * time.Second
)

func TestMain(m *testing.M) {
	os.Exit(runBenchMain(m))
}

// runBenchMain builds the daemon (without -race: the race detector would dominate the
// latencies) only when a latency benchmark will run, so `go test ./...` and the no-op
// benchmarks do not pay for a link of the whole daemon.
func runBenchMain(m *testing.M) int {
	flag.Parse()
	if !latencySelected() {
		return m.Run()
	}
	bin, cleanup, err := testdaemon.Build(context.Background(), testdaemon.BuildOptions{Module: ".."})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	shipwatchBin = bin
	return m.Run()
}

// latencySelected reports whether the -test.bench pattern selects a latency benchmark.
func latencySelected() bool {
	f := flag.Lookup("test.bench")
	if f == nil || f.Value.String() == "" {
		return false
	}
	top, _, _ := strings.Cut(f.Value.String(), "/")
	re, err := regexp.Compile(top)
	if err != nil {
		return true // the testing package reports the bad pattern itself
	}
	return re.MatchString("BenchmarkDriftDetection") || re.MatchString("BenchmarkWebhookToRunning")
}

// BenchmarkDriftDetection measures how long the daemon takes to notice a container removed
// by hand: from `docker rm -f` returning to shipwatch_app_drifted_resources{app} > 0 on
// /metrics (polled every 5 ms). The poll interval is an hour, so only the Engine's event
// stream can explain a detection. drift: alert keeps the daemon from healing, so each op
// is restored (untimed) with POST /api/v1/apps/app/sync.
//
// Metrics: ms-p50, ms-p95, ms-max, ms-mean of the detection latency; rm-call-ms-p50, the
// remove call itself (the Engine emits kill and die events during it, so the daemon's
// clock starts before ours). ns/op is the remove call plus the detection latency.
// Run with a fixed count, e.g. -benchtime=20x.
func BenchmarkDriftDetection(b *testing.B) {
	f := startLatencyFixture(b, fixtureOptions{drift: "alert"})
	ctx := b.Context()
	drifted := func() float64 { return f.metric("shipwatch_app_drifted_resources") }
	var lat, rmCalls []time.Duration
	for b.Loop() {
		b.StopTimer()
		ids := f.running(ctx, "")
		if len(ids) != 1 {
			b.Fatalf("want 1 running container of %s, found %d", f.project, len(ids))
		}
		id := ids[0]
		b.StartTimer()
		call := time.Now()
		if _, err := f.engine.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil {
			b.Fatalf("remove container %s: %v", id, err)
		}
		start := time.Now()
		rmCalls = append(rmCalls, start.Sub(call))
		f.pollUntil(metricPoll, "drift reported", func() bool { return drifted() > 0 })
		lat = append(lat, time.Since(start))
		b.StopTimer()

		if code := f.daemon.Post(b, "/api/v1/apps/app/sync", f.token); code != http.StatusOK {
			b.Fatalf("POST /api/v1/apps/app/sync = %d", code)
		}
		f.pollUntil(settlePoll, "drift cleared", func() bool { return drifted() == 0 })
		f.settle(ctx, "")
		b.StartTimer()
	}
	reportLatencies(b, "ms", lat)
	if len(rmCalls) > 0 {
		b.ReportMetric(percentile(sorted(rmCalls), 50), "rm-call-ms-p50")
	}
}

// BenchmarkWebhookToRunning measures commit-to-deploy through a webhook: from sending a
// signed GitHub push for a new commit (which changes the service's environment, so its
// container is recreated) until a container labelled with that commit is running.
//
// The container start time is subtracted for ms-minus-start-*, leaving what shipwatch adds.
// It is the duration of the daemon's POST /containers/{id}/start, timed by a proxy in front
// of the Engine. The Engine's State.StartedAt − Created of the new container is reported
// too (created-to-started-ms-p50), but it is not the start time: a recreate creates the new
// container first and stops and removes the old one before starting it, so that interval
// holds shipwatch's stop, remove and rename as well.
//
// Metrics: ms-p50, ms-p95, ms-max, ms-mean; ms-minus-start-{p50,p95,max,mean};
// start-call-ms-p50; created-to-started-ms-p50. Run with e.g. -benchtime=20x.
func BenchmarkWebhookToRunning(b *testing.B) {
	f := startLatencyFixture(b, fixtureOptions{drift: "heal", timeStarts: true})
	ctx := b.Context()
	var lat, minusStart, startCalls, createdToStarted []time.Duration
	op := 0
	for b.Loop() {
		b.StopTimer()
		op++
		rev := f.repo.Commit(fmt.Sprintf("op %d", op), latencyCompose(fmt.Sprintf("op-%d", op)))
		body := fmt.Appendf(nil, `{"ref":"refs/heads/main","after":%q,"repository":{"clone_url":%q}}`, rev, f.repo.URL())
		b.StartTimer()
		start := time.Now()
		if code := f.daemon.GitHubPush(b, f.secret, body); code != http.StatusAccepted {
			b.Fatalf("signed push = %d, want 202", code)
		}
		var ids []string
		f.pollUntil(metricPoll, "new commit running", func() bool {
			ids = f.running(ctx, rev)
			return len(ids) > 0
		})
		elapsed := time.Since(start)
		b.StopTimer()
		id := ids[0]

		// The Engine lists the container as running a moment before its answer to the
		// start call reaches the proxy.
		var call time.Duration
		f.pollUntil(metricPoll, "start call timed by the proxy", func() bool {
			var ok bool
			call, ok = f.proxy.startCall(id)
			return ok
		})
		lat = append(lat, elapsed)
		startCalls = append(startCalls, call)
		minusStart = append(minusStart, elapsed-call)
		createdToStarted = append(createdToStarted, f.createdToStarted(ctx, id))
		f.settle(ctx, rev)
		b.StartTimer()
	}
	reportLatencies(b, "ms", lat)
	reportLatencies(b, "ms-minus-start", minusStart)
	if len(lat) > 0 {
		b.ReportMetric(percentile(sorted(startCalls), 50), "start-call-ms-p50")
		b.ReportMetric(percentile(sorted(createdToStarted), 50), "created-to-started-ms-p50")
	}
}

// latencyFixture is one running daemon managing one single-service app.
type latencyFixture struct {
	b       *testing.B
	engine  *client.Client
	project string
	repo    *testgit.Repo
	daemon  *testdaemon.Daemon
	token   string
	secret  []byte
	proxy   *startClock // nil unless fixtureOptions.timeStarts
}

// fixtureOptions shape the daemon of a latency benchmark.
type fixtureOptions struct {
	drift string // the app's drift policy: heal or alert
	// timeStarts puts a proxy that times container starts between the daemon and the
	// Engine; without it the daemon talks to the Engine directly.
	timeStarts bool
}

// startLatencyFixture deploys the app through a fresh daemon and waits until it is in
// sync and quiet. Everything is removed by the project label when the benchmark ends.
func startLatencyFixture(b *testing.B, opts fixtureOptions) *latencyFixture {
	b.Helper()
	if shipwatchBin == "" {
		b.Fatal("the daemon binary was not built: TestMain did not see this benchmark selected")
	}
	ctx := b.Context()
	engine, err := docker.NewClient("")
	if err != nil {
		b.Fatalf("engine client: %v", err)
	}
	b.Cleanup(func() { _ = engine.Close() })
	testimage.Build(ctx, b, engine, benchImage, "")

	f := &latencyFixture{
		b: b, engine: engine, project: "swbench-latency-" + opts.drift,
		token: "bench-token", secret: []byte("bench-webhook-secret"),
	}
	// Registered before the daemon starts, so it runs after the daemon has stopped.
	testproject.Clean(b, engine, f.project)
	f.repo = testgit.New(b)
	rev := f.repo.Commit("initial", latencyCompose("initial"))
	cfg := testdaemon.Config{
		RepoURL: f.repo.URL(), Addr: testdaemon.FreeAddr(b), Project: f.project,
		Drift: opts.drift, Sync: "auto", Token: f.token, WebhookSecret: string(f.secret),
	}
	if opts.timeStarts {
		// Started before the daemon, so it is closed after the daemon has stopped.
		f.proxy = startTimingProxy(b, engineSocket(b))
		cfg.DockerHost = f.proxy.host
	}
	f.daemon = testdaemon.Start(b, testdaemon.Options{Binary: shipwatchBin, Config: cfg.Write(b), Addr: cfg.Addr, LogLevel: "info"})
	// The image exists, so the first deploy takes about a second: settle's timeout will do.
	f.settle(ctx, rev)
	return f
}

// latencyCompose is the app's repo content: one web service whose environment holds
// message, so a new message recreates its container.
func latencyCompose(message string) map[string]string {
	return map[string]string{"compose.yaml": fmt.Sprintf(`services:
  web:
    image: %s
    environment:
      MESSAGE: %q
    restart: unless-stopped
`, benchImage, message)}
}

// pollUntil calls cond every period until it holds; it fails the benchmark after opTimeout.
func (f *latencyFixture) pollUntil(period time.Duration, what string, cond func() bool) {
	f.b.Helper()
	testpoll.Poll{Period: period, Timeout: opTimeout}.Until(f.b, what, cond)
}

// settle waits until the app is back in its steady state (one running container, at rev
// when given, in sync) and no pass has finished for quietFor. Without the quiet period the
// passes caused by the restore's own Engine events could overlap the next measurement.
func (f *latencyFixture) settle(ctx context.Context, rev string) {
	f.b.Helper()
	f.pollUntil(settlePoll, "steady state", func() bool {
		return len(f.running(ctx, rev)) == 1 && f.daemon.Status(f.b, "app").Sync == reconciler.SyncSynced
	})
	passes := func() float64 { return f.metric("shipwatch_reconcile_total") }
	last, since := passes(), time.Now()
	f.pollUntil(settlePoll, "no reconcile pass for "+quietFor.String(), func() bool {
		if n := passes(); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) >= quietFor
	})
}

// running lists the project's running containers, only those at rev when rev is set.
func (f *latencyFixture) running(ctx context.Context, rev string) []string {
	f.b.Helper()
	filter := client.Filters{}.Add("label", docker.LabelProject+"="+f.project)
	if rev != "" {
		filter = filter.Add("label", docker.LabelRevision+"="+rev)
	}
	res, err := f.engine.ContainerList(ctx, client.ContainerListOptions{Filters: filter})
	if err != nil {
		f.b.Fatalf("list containers of %s: %v", f.project, err)
	}
	ids := make([]string, 0, len(res.Items))
	for _, c := range res.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

// createdToStarted is State.StartedAt − Created of a container, by the Engine's clock.
func (f *latencyFixture) createdToStarted(ctx context.Context, id string) time.Duration {
	f.b.Helper()
	res, err := f.engine.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		f.b.Fatalf("inspect container %s: %v", id, err)
	}
	c := res.Container
	var state container.State
	if c.State != nil {
		state = *c.State
	}
	created, errCreated := time.Parse(time.RFC3339Nano, c.Created)
	started, errStarted := time.Parse(time.RFC3339Nano, state.StartedAt)
	if err := errors.Join(errCreated, errStarted); err != nil {
		f.b.Fatalf("container %s: parse times: %v", id, err)
	}
	return started.Sub(created)
}

// metric sums the app's samples of name; 0 when absent or when the scrape fails (the
// caller polls).
func (f *latencyFixture) metric(name string) float64 {
	return f.daemon.Metric(f.b, name, map[string]string{"app": "app"})
}

// reportLatencies adds p50, p95, max and mean (milliseconds) of ds as custom metrics named
// prefix-p50 and so on.
func reportLatencies(b *testing.B, prefix string, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	s := sorted(ds)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	b.ReportMetric(percentile(s, 50), prefix+"-p50")
	b.ReportMetric(percentile(s, 95), prefix+"-p95")
	b.ReportMetric(ms(s[len(s)-1]), prefix+"-max")
	b.ReportMetric(ms(total/time.Duration(len(s))), prefix+"-mean")
}

func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// percentile is the nearest-rank percentile of sorted ds, in milliseconds.
func percentile(s []time.Duration, p int) float64 {
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n), 1-based
	return ms(s[max(rank, 1)-1])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// startClock is a reverse proxy in front of the Engine that times every container start
// call, so the Engine's start time can be taken out of an end-to-end latency.
type startClock struct {
	host  string // unix://... for the daemon's docker.host
	mu    sync.Mutex
	calls map[string]time.Duration // container ID or name -> start call duration
}

func (c *startClock) startCall(id string) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.calls[id]
	return d, ok
}

// roundTrip times POST /vX/containers/{id}/start; a start answers 204 with no body, so
// the response headers mark the end of the call.
func (c *startClock) roundTrip(base http.RoundTripper) roundTripFunc {
	return func(r *http.Request) (*http.Response, error) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		n := len(parts)
		isStart := r.Method == http.MethodPost && n >= 3 && parts[n-1] == "start" && parts[n-3] == "containers"
		begin := time.Now()
		resp, err := base.RoundTrip(r)
		if isStart && err == nil && resp.StatusCode == http.StatusNoContent {
			c.mu.Lock()
			c.calls[parts[n-2]] = time.Since(begin)
			c.mu.Unlock()
		}
		return resp, err
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// startTimingProxy serves the Engine API on a unix socket in a temporary directory until
// the benchmark ends.
func startTimingProxy(b *testing.B, engineSock string) *startClock {
	b.Helper()
	sock := filepath.Join(b.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatalf("listen on proxy socket: %v", err)
	}
	c := &startClock{host: "unix://" + sock, calls: map[string]time.Duration{}}
	target := &url.URL{Scheme: "http", Host: "docker"}
	srv := &http.Server{Handler: &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport:     c.roundTrip(unixTransport(engineSock)),
		FlushInterval: -1, // the daemon's event stream must not be buffered
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when closed at cleanup
	}()
	b.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return c
}
