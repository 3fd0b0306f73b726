package testimage

// Program is the source of the test image's only binary, /app. It is exported so examples
// and tests can build the same program elsewhere.
//
// Modes:
//   - default: HTTP server on :8080 (or -addr); "/" prints $MESSAGE, "/healthz" answers 200.
//   - -healthcheck: GET /healthz on the server and exit 0 or 1, usable as a compose
//     healthcheck: ["CMD", "/app", "-healthcheck"].
//   - -exit N: exit at once with code N, for one-shot services.
//
// It exits on SIGTERM or SIGINT at once, so stop_grace_period never has to expire in tests.
const Program = `package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	health := flag.Bool("healthcheck", false, "probe the server and exit 0 when healthy")
	exit := flag.Int("exit", -1, "exit at once with this code")
	delay := flag.Duration("delay", 0, "wait this long before serving")
	flag.Parse()

	if *exit >= 0 {
		fmt.Println("one-shot exiting with", *exit)
		os.Exit(*exit)
	}
	if *health {
		os.Exit(probe(*addr))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	time.Sleep(*delay)

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, os.Getenv("MESSAGE"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func probe(addr string) int {
	host := addr
	if len(host) > 0 && host[0] == ':' {
		host = "127.0.0.1" + host
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + host + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
`
