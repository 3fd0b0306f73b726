package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/drivers/kubernetes"
	"github.com/shipwatch/shipwatch/manifests"
)

// Each tool is told apart in the audit log by its user agent: the driver's is set here,
// Debian's kubectl sends "kubectl/<version> ..." (and its dispatcher "kubectl-dispatcher/...").
const (
	kubeBenchAgent  = "shipwatch-bench"
	kubeMarkerAgent = "shipwatch-bench-marker"
	kubectlAgent    = "kubectl"
)

var kubeObjectCounts = []int{10, 100, 1000}

// BenchmarkKubeRequests counts the API requests and wall time of deploying N ConfigMaps
// (plus their Namespace) with the shipwatch Kubernetes driver and with
// `kubectl apply --server-side -f DIR`, on a real API server started with
// test/k8s/testenv.sh (or the one SHIPWATCH_KUBECONFIG names, with its audit log in
// SHIPWATCH_TESTENV_AUDIT_LOG). Requests are read from the API server's audit log: events
// at stage ResponseComplete, so each request counts once, filtered by user agent.
//
//   - first: the objects do not exist. shipwatch: a fresh driver (kubernetes.New), load the
//     files, Plan, Apply. kubectl: one invocation with an empty discovery cache.
//   - noop: nothing changed since the first apply. shipwatch: the warm driver of the first
//     apply (a daemon's steady state) loads the files and Plans; it Applies only when the
//     plan is not in sync, which fails the benchmark. kubectl: the same invocation again,
//     with the discovery cache the first one filled.
//
// Each op of "first" deploys to a namespace of its own, so run it with -benchtime 1x;
// "noop" may run any number of ops. Metrics: requests/op, one <VERB>/op per verb seen (a
// dry-run PATCH is PATCH-dryrun), s/op. The shipwatch client keeps the client-go rate limit
// of kubernetes.NewConfig (QPS 0: client-go's 5 QPS, burst 10) unless
// SHIPWATCH_BENCH_KUBE_QPS sets QPS (burst 2 × QPS; a negative value disables the limit).
func BenchmarkKubeRequests(b *testing.B) {
	env := startKubeEnv(b)
	for _, n := range kubeObjectCounts {
		sw := &swState{env: env, n: n}
		kc := &kubectlState{env: env, n: n, cache: filepath.Join(b.TempDir(), "kubectl-cache")}
		b.Run(fmt.Sprintf("N=%d/shipwatch/first", n), sw.first)
		b.Run(fmt.Sprintf("N=%d/shipwatch/noop", n), sw.noop)
		b.Run(fmt.Sprintf("N=%d/kubectl/first", n), kc.first)
		b.Run(fmt.Sprintf("N=%d/kubectl/noop", n), kc.noop)
	}
}

// kubeEnv is the cluster under test.
type kubeEnv struct {
	kubeconfig string
	audit      string
	config     *rest.Config // the driver's: user agent kubeBenchAgent
	admin      client.Client
	owned      bool   // started here: stopped at the end instead of cleaned
	files      string // the apps' directories; it outlives the sub-benchmarks
}

// startKubeEnv finds or starts the cluster for the whole benchmark; b.Cleanup stops what it
// started, or deletes the namespaces and inventories it created in a cluster it was given.
func startKubeEnv(b *testing.B) *kubeEnv {
	b.Helper()
	env := &kubeEnv{
		kubeconfig: os.Getenv("SHIPWATCH_KUBECONFIG"),
		audit:      os.Getenv("SHIPWATCH_TESTENV_AUDIT_LOG"),
		files:      b.TempDir(),
	}
	if env.kubeconfig == "" {
		env.startCluster(b)
	} else if env.audit == "" {
		b.Skip("SHIPWATCH_KUBECONFIG is set but SHIPWATCH_TESTENV_AUDIT_LOG is not: requests cannot be counted")
	}
	cfg, err := kubernetes.NewConfig(env.kubeconfig, "")
	if err != nil {
		b.Fatalf("kubeconfig: %v", err)
	}
	cfg.UserAgent = kubeBenchAgent
	if q := os.Getenv("SHIPWATCH_BENCH_KUBE_QPS"); q != "" {
		qps, err := strconv.ParseFloat(q, 32)
		if err != nil {
			b.Fatalf("SHIPWATCH_BENCH_KUBE_QPS=%q: %v", q, err)
		}
		cfg.QPS = float32(qps) // negative: client-go applies no rate limit at all
		if qps > 0 {
			cfg.Burst = int(2 * qps)
		}
	}
	env.config = cfg
	admin := rest.CopyConfig(cfg)
	admin.UserAgent, admin.QPS, admin.Burst = kubeMarkerAgent, 100, 200
	env.admin, err = client.New(admin, client.Options{})
	if err != nil {
		b.Fatalf("admin client: %v", err)
	}
	if !env.owned {
		b.Cleanup(func() { env.deleteNamespaces(b) })
	}
	return env
}

// startCluster runs testenv.sh start in a temporary directory and registers its stop.
func (e *kubeEnv) startCluster(b *testing.B) {
	b.Helper()
	script, err := filepath.Abs(filepath.Join("..", "test", "k8s", "testenv.sh"))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	out, err := exec.CommandContext(b.Context(), "bash", script, "start", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("SHIPWATCH_TESTENV_REQUIRED") == "" && bytes.Contains(out, []byte("build")) {
			b.Skipf("kubernetes testenv not started (run test/k8s/testenv.sh build): %v\n%s", err, out)
		}
		b.Fatalf("testenv.sh start: %v\n%s", err, out)
	}
	// b.Context is done before cleanups run: the stop must outlive it.
	stopCtx := context.WithoutCancel(b.Context())
	b.Cleanup(func() {
		if out, err := exec.CommandContext(stopCtx, "bash", script, "stop", dir).CombinedOutput(); err != nil {
			b.Errorf("testenv.sh stop: %v\n%s", err, out)
		}
	})
	e.kubeconfig = filepath.Join(dir, "kubeconfig")
	e.audit = filepath.Join(dir, "audit.log")
	e.owned = true
}

// deleteNamespaces removes, from a cluster the benchmark did not start, the namespaces it
// created (their ConfigMaps go with them) and the driver's inventory Secrets.
func (e *kubeEnv) deleteNamespaces(b *testing.B) {
	ctx := context.WithoutCancel(b.Context())
	var list corev1.NamespaceList
	if err := e.admin.List(ctx, &list); err != nil {
		b.Logf("list namespaces: %v", err)
		return
	}
	for _, ns := range list.Items {
		if strings.HasPrefix(ns.Name, "kb-") {
			if err := client.IgnoreNotFound(e.admin.Delete(ctx, &ns)); err != nil {
				b.Logf("delete namespace %s: %v", ns.Name, err)
			}
		}
	}
	var secrets corev1.SecretList
	if err := e.admin.List(ctx, &secrets, client.InNamespace(kubernetes.DefaultNamespace)); err != nil {
		b.Logf("list secrets: %v", err)
		return
	}
	for _, s := range secrets.Items {
		if strings.HasPrefix(s.Name, kubernetes.ParentName("kb-")) {
			if err := client.IgnoreNotFound(e.admin.Delete(ctx, &s)); err != nil {
				b.Logf("delete inventory %s: %v", s.Name, err)
			}
		}
	}
}

// writeKubeApp writes the Namespace and n ConfigMaps as one file each, the Namespace's
// first in path order as kubectl needs it, and returns the directory.
func writeKubeApp(b *testing.B, root, ns string, n int) string {
	b.Helper()
	dir := filepath.Join(root, ns)
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(dir, "00-namespace.yaml"),
		fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns))
	for i := range n {
		writeFile(b, filepath.Join(dir, fmt.Sprintf("cm-%04d.yaml", i)), fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-%04d
  namespace: %s
  labels:
    app.kubernetes.io/name: bench
data:
  index: "%d"
  payload: %s
`, i, ns, i, strings.Repeat("x", 64)))
	}
	return dir
}

// swState carries the shipwatch app of one N from its first apply to its no-op.
type swState struct {
	env    *kubeEnv
	n      int
	driver *kubernetes.Driver
	app    drivers.App
	dir    string
	seq    int // names each first apply's namespace, unique across b.N ramps
}

func (s *swState) first(b *testing.B) {
	ctx := b.Context()
	var deployed int
	measure(b, s.env, isAgent(kubeBenchAgent), func() {
		b.StopTimer()
		s.seq++
		ns := fmt.Sprintf("kb-sw-%d-%d", s.n, s.seq)
		dir := writeKubeApp(b, s.env.files, ns, s.n)
		b.StartTimer()
		d, err := kubernetes.New(ctx, kubernetes.Options{Config: s.env.config, Version: "bench"})
		if err != nil {
			b.Fatalf("driver: %v", err)
		}
		app := drivers.App{Name: ns, Revision: "bench"}
		changes := reconcileKube(ctx, b, d, app, dir)
		b.StopTimer()
		if got := len(changes.Changed()); got != s.n+1 {
			b.Fatalf("first apply of %s changed %d objects, want %d", ns, got, s.n+1)
		}
		s.driver, s.app, s.dir = d, app, dir
		deployed++
		b.StartTimer()
	})
	if deployed == 0 {
		b.Fatal("nothing deployed")
	}
}

func (s *swState) noop(b *testing.B) {
	ctx := b.Context()
	if s.driver == nil {
		b.Skip("the first apply of this N did not run: select it too (-bench 'KubeRequests/N=10/shipwatch')")
	}
	measure(b, s.env, isAgent(kubeBenchAgent), func() {
		if changes := reconcileKube(ctx, b, s.driver, s.app, s.dir); len(changes) != 0 {
			b.Fatalf("no-op reconcile of %s applied %d changes, want none", s.app.Name, len(changes))
		}
	})
}

// reconcileKube is one reconcile of a kubernetes app as the daemon does it: load the files,
// Plan, Apply only when not in sync. It returns what Apply did (nothing when in sync).
func reconcileKube(ctx context.Context, b *testing.B, d *kubernetes.Driver, app drivers.App, dir string) drivers.ChangeSet {
	b.Helper()
	objs, err := manifests.LoadKube(ctx, manifests.KubeOptions{Root: dir})
	if err != nil {
		b.Fatalf("load %s: %v", dir, err)
	}
	bundle := &manifests.Bundle{Revision: app.Revision, Objects: manifests.SortForApply(objs)}
	plan, err := d.Plan(ctx, app, bundle)
	if err != nil {
		b.Fatalf("plan %s: %v", app.Name, err)
	}
	if plan.InSync() {
		return nil
	}
	changes, err := d.Apply(ctx, plan, drivers.ApplyOptions{Prune: true})
	if err != nil {
		b.Fatalf("apply %s: %v", app.Name, err)
	}
	return changes
}

// kubectlState carries the kubectl deployment of one N from its first apply to its no-op.
type kubectlState struct {
	env   *kubeEnv
	n     int
	cache string // kubectl --cache-dir: empty before the first apply, warm after
	dir   string
	seq   int // names each first apply's namespace, unique across b.N ramps
}

func (k *kubectlState) first(b *testing.B) {
	measure(b, k.env, hasAgentPrefix(kubectlAgent), func() {
		b.StopTimer()
		k.seq++
		ns := fmt.Sprintf("kb-kc-%d-%d", k.n, k.seq)
		dir := writeKubeApp(b, k.env.files, ns, k.n)
		if err := os.RemoveAll(k.cache); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		out := k.apply(b, dir)
		b.StopTimer()
		if got := strings.Count(out, " serverside-applied\n"); got != k.n+1 {
			b.Fatalf("kubectl applied %d objects, want %d:\n%s", got, k.n+1, out)
		}
		k.dir = dir
		b.StartTimer()
	})
}

func (k *kubectlState) noop(b *testing.B) {
	if k.dir == "" {
		b.Skip("the first apply of this N did not run: select it too (-bench 'KubeRequests/N=10/kubectl')")
	}
	measure(b, k.env, hasAgentPrefix(kubectlAgent), func() { k.apply(b, k.dir) })
}

// apply runs `kubectl apply --server-side -f dir` and returns its output.
func (k *kubectlState) apply(b *testing.B, dir string) string {
	b.Helper()
	cmd := exec.CommandContext(b.Context(), "kubectl", "--kubeconfig", k.env.kubeconfig,
		"--cache-dir", k.cache, "apply", "--server-side", "-f", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("kubectl apply --server-side -f %s: %v\n%s", dir, err, out)
	}
	return string(out)
}

// measure runs op b.N times and reports the audited requests of the matching user agents
// per op, by verb, and the wall time per op in seconds.
func measure(b *testing.B, env *kubeEnv, match func(string) bool, op func()) {
	b.Helper()
	from := auditSize(b, env.audit)
	start := time.Now()
	b.ResetTimer()
	for range b.N {
		op()
	}
	b.StopTimer()
	wall := time.Since(start)
	counts := env.auditedSince(b, from, match)
	total := 0
	for _, verb := range slices.Sorted(maps.Keys(counts)) {
		b.ReportMetric(float64(counts[verb])/float64(b.N), verb+"/op")
		total += counts[verb]
	}
	b.ReportMetric(float64(total)/float64(b.N), "requests/op")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/op")
	b.Logf("wall %.2fs for %d op(s), including untimed setup", wall.Seconds(), b.N)
}

func isAgent(agent string) func(string) bool {
	return func(ua string) bool { return ua == agent }
}

func hasAgentPrefix(prefix string) func(string) bool {
	return func(ua string) bool { return strings.HasPrefix(ua, prefix) }
}

func auditSize(b *testing.B, path string) int64 {
	b.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatalf("audit log: %v", err)
	}
	return fi.Size()
}

// auditEvent is the part of an audit.k8s.io/v1 Event the benchmark reads.
type auditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	UserAgent  string `json:"userAgent"`
	RequestURI string `json:"requestURI"`
}

// auditedSince counts the ResponseComplete events after offset from by verb. It first sends
// a marker request (a GET of the default namespace, a request nothing else sends) and waits for
// its event: every request measured before it has then been answered, and its event written.
func (e *kubeEnv) auditedSince(b *testing.B, from int64, match func(string) bool) map[string]int {
	b.Helper()
	var ns corev1.Namespace
	if err := e.admin.Get(b.Context(), client.ObjectKey{Name: kubernetes.DefaultNamespace}, &ns); err != nil {
		b.Fatalf("marker request: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		counts, sawMarker := readAudit(b, e.audit, from, match)
		if sawMarker {
			return counts
		}
		if time.Now().After(deadline) {
			b.Fatal("the marker request never reached the audit log")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readAudit(b *testing.B, path string, from int64, match func(string) bool) (map[string]int, bool) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		b.Fatalf("audit log: %v", err)
	}
	counts := map[string]int{}
	marker := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line still being written
		}
		if ev.Stage != "ResponseComplete" {
			continue
		}
		if ev.UserAgent == kubeMarkerAgent && ev.RequestURI == "/api/v1/namespaces/"+kubernetes.DefaultNamespace {
			marker = true
			continue
		}
		if match(ev.UserAgent) {
			counts[verbLabel(ev)]++
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("read audit log: %v", err)
	}
	return counts, marker
}

// verbLabel is the upper-case verb, with dry-run writes counted apart: they read, not write.
func verbLabel(ev auditEvent) string {
	v := strings.ToUpper(ev.Verb)
	if strings.Contains(ev.RequestURI, "dryRun=All") {
		v += "-dryrun"
	}
	return v
}

func writeFile(b *testing.B, path, content string) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatalf("make dir for %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		b.Fatalf("write %s: %v", path, err)
	}
}
