package faults

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeEnv is a real API server for a fault test.
type kubeEnv struct {
	kubeconfig string
	// dir is the testenv.sh DIR of the cluster; empty for an external SHIPWATCH_KUBECONFIG,
	// whose API server the test must not stop.
	dir    string
	script string
	client *k8s.Clientset
}

// kubeCluster returns an API server for t. restartable asks for one whose kube-apiserver
// the test may stop and start: the cluster of $SHIPWATCH_TESTENV_DIR (a testenv.sh DIR that
// runs) or a new one in a temporary directory. Otherwise $SHIPWATCH_KUBECONFIG is used when
// set. A cluster the test starts is stopped when it ends; a missing backend fails the test
// (run test/k8s/testenv.sh build first).
func kubeCluster(t *testing.T, restartable bool) *kubeEnv {
	t.Helper()
	script, err := filepath.Abs("../k8s/testenv.sh")
	if err != nil {
		t.Fatal(err)
	}
	k := &kubeEnv{script: script}
	switch dir, kc := os.Getenv("SHIPWATCH_TESTENV_DIR"), os.Getenv("SHIPWATCH_KUBECONFIG"); {
	case dir != "":
		k.dir, k.kubeconfig = dir, filepath.Join(dir, "kubeconfig")
	case kc != "" && !restartable:
		k.kubeconfig = kc
	default:
		k.dir = t.TempDir()
		start := time.Now()
		if out, err := exec.CommandContext(t.Context(), "bash", script, "start", k.dir).CombinedOutput(); err != nil {
			t.Fatalf("start the test cluster (run `test/k8s/testenv.sh build` first): %v\n%s", err, out)
		}
		t.Logf("test cluster started in %s", time.Since(start).Round(time.Second))
		t.Cleanup(func() { _ = exec.Command("bash", script, "stop", k.dir).Run() })
		k.kubeconfig = filepath.Join(k.dir, "kubeconfig")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", k.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	if k.client, err = k8s.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return k
}

// testenv runs `testenv.sh VERB DIR ARGS...` on the cluster and returns how long it took.
func (k *kubeEnv) testenv(t *testing.T, verb string, args ...string) time.Duration {
	t.Helper()
	if k.dir == "" {
		t.Fatalf("testenv.sh %s needs a cluster this test may restart", verb)
	}
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), "bash", append([]string{k.script, verb, k.dir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv.sh %s: %v\n%s", verb, err, out)
	}
	return time.Since(start)
}

// killAPIServer crashes the cluster's kube-apiserver with SIGKILL at once, without the
// latency of a shell (a cut meant for the middle of an apply must land there), then lets
// `testenv.sh stop-apiserver --kill` confirm it is gone and drop its pid file.
func (k *kubeEnv) killAPIServer(t *testing.T) {
	t.Helper()
	if k.dir == "" {
		t.Fatal("killing the API server needs a cluster this test may restart")
	}
	raw, err := os.ReadFile(filepath.Join(k.dir, "kube-apiserver.pid"))
	if err != nil {
		t.Fatalf("kube-apiserver pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("kube-apiserver pid %q: %v", raw, err)
	}
	// The pid file may be stale: only a process that is this cluster's apiserver is killed.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "kube-apiserver") || !strings.Contains(string(cmdline), k.dir) {
		t.Fatalf("pid %d is not the kube-apiserver of %s (%v)", pid, k.dir, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill kube-apiserver: %v", err)
	}
	k.testenv(t, "stop-apiserver", "--kill")
}

// uniqueName is prefix plus 8 random hex digits: a namespace or app no other run uses.
func uniqueName(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// kubeApp is one kubernetes app in a daemon's config.
type kubeApp struct {
	name, path, namespace string
	forceConflicts        bool
}

// writeKubeConfig writes a daemon config deploying apps from repo (polled every interval)
// to the cluster, and returns its path.
func writeKubeConfig(t *testing.T, repo, addr, kubeconfig string, interval time.Duration, apps ...kubeApp) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "stateDir: %s\nlisten: %q\nrepos: [{name: deploy, url: %s, interval: %s}]\napps:\n",
		filepath.Join(dir, "state"), addr, repo, interval)
	for _, a := range apps {
		fmt.Fprintf(&b, "  - name: %s\n    repo: deploy\n    path: %s\n    driver: kubernetes\n", a.name, a.path)
		fmt.Fprintf(&b, "    kubernetes: {kubeconfig: %s, namespace: %s, forceConflicts: %t}\n", kubeconfig, a.namespace, a.forceConflicts)
		b.WriteString("    drift: heal\n    healthTimeout: 90s\n")
	}
	p := filepath.Join(dir, "shipwatch.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
