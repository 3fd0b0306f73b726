package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string) (int, string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	return rec.Code, rec.Header().Get("Content-Type"), rec.Body.String()
}

func TestPageShowsMessageAndHostname(t *testing.T) {
	h := newHandler("Hello from v2", "web-abc123")
	code, ctype, body := get(t, h, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d, want 200", code)
	}
	if !strings.HasPrefix(ctype, "text/html") {
		t.Errorf("Content-Type = %q, want text/html", ctype)
	}
	for _, want := range []string{"<h1>Hello from v2</h1>", "<code>web-abc123</code>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

func TestPageEscapesMessage(t *testing.T) {
	_, _, body := get(t, newHandler("<script>x</script>", "h"), "/")
	if strings.Contains(body, "<script>") {
		t.Fatalf("MESSAGE was not escaped:\n%s", body)
	}
	if !strings.Contains(body, "&lt;script&gt;x&lt;/script&gt;") {
		t.Fatalf("escaped MESSAGE missing:\n%s", body)
	}
}

func TestHealthzAndUnknownPaths(t *testing.T) {
	h := newHandler("m", "h")
	if code, _, body := get(t, h, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}
	if code, _, _ := get(t, h, "/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

func TestProbe(t *testing.T) {
	healthy := httptest.NewServer(newHandler("m", "h"))
	defer healthy.Close()
	if err := probe(t.Context(), healthy.URL+"/healthz"); err != nil {
		t.Errorf("probe of a healthy server: %v", err)
	}
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	if err := probe(t.Context(), failing.URL+"/healthz"); err == nil {
		t.Error("probe of a 503 server succeeded, want an error")
	}
	if err := probe(t.Context(), "http://"+closedAddr(t)+"/healthz"); err == nil {
		t.Error("probe of a closed port succeeded, want an error")
	}
}

func TestServeStopsWhenContextEnds(t *testing.T) {
	addr := closedAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, slog.New(slog.DiscardHandler), addr, newHandler("m", "h")) }()

	// Wait until it answers, so the test covers a running server being stopped.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := probe(t.Context(), "http://"+addr+"/healthz")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v after cancel, want nil", err)
		}
	case <-time.After(shutdownGrace + time.Second):
		t.Fatal("serve did not return after its context ended")
	}
}

// closedAddr returns a loopback address nothing listens on (it was just freed).
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
