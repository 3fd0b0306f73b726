package server

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/shipwatch/shipwatch/internal/metrics"
)

func TestEndpoints(t *testing.T) {
	m := metrics.New("v-test")
	var ready atomic.Bool
	s, err := New(t.Context(), Options{Addr: "127.0.0.1:0", Metrics: m.Handler(), Ready: ready.Load})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(t.Context()) }()
	base := "http://" + s.Addr()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Errorf("/readyz before ready = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d", code)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, `shipwatch_build_info{goversion=`) || !strings.Contains(body, `version="v-test"`) {
		t.Errorf("/metrics = %d, missing build_info:\n%.500s", code, body)
	}
}
