package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipwatch/shipwatch/drivers"
)

func openTest(t *testing.T, dir string, limit int) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, HistoryLimit: limit})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func entry(rev string, result Result) Entry {
	now := time.Unix(1_700_000_000, 0).UTC()
	return Entry{Trigger: TriggerPoll, Actor: ActorDaemon, Started: now, Finished: now, Revision: rev, Result: result}
}

func TestHistoryIsBoundedNewestFirst(t *testing.T) {
	s := openTest(t, t.TempDir(), 3)
	for i := range 5 {
		if _, err := s.Record("web", entry(fmt.Sprintf("rev%d", i), ResultSucceeded)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History("web", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range h {
		got = append(got, fmt.Sprintf("%d:%s", e.ID, e.Revision))
	}
	if want := "5:rev4 4:rev3 3:rev2"; strings.Join(got, " ") != want {
		t.Fatalf("history = %v, want %s", got, want)
	}
	if _, err := s.Entry("web", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dropped entry 1: err = %v, want ErrNotFound", err)
	}
	if h, _ := s.History("web", 2); len(h) != 2 || h[0].ID != 5 {
		t.Fatalf("History(limit 2) = %+v", h)
	}
	if h, _ := s.History("other", 0); len(h) != 0 {
		t.Fatalf("an app without history has %d entries", len(h))
	}
}

func TestRepeatedFailureIsFolded(t *testing.T) {
	s := openTest(t, t.TempDir(), 10)
	fail := entry("bad", ResultFailed)
	fail.Stage, fail.Error = "ApplyFailed", "engine said no"
	for range 3 {
		if _, err := s.Record("web", fail); err != nil {
			t.Fatal(err)
		}
	}
	other := fail
	other.Error = "something else"
	if _, err := s.Record("web", other); err != nil {
		t.Fatal(err)
	}
	h, _ := s.History("web", 0)
	if len(h) != 2 || h[1].Attempts != 3 || h[0].Attempts != 0 {
		t.Fatalf("history = %+v, want the first failure folded three times and the second apart", h)
	}
}

func TestRecordsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rec := AppRecord{Applied: "abc", Pin: &Pin{Revision: "def", Reason: PinRollback, Actor: ActorCLI}}
	if err := s.SaveApp("web", rec); err != nil {
		t.Fatal(err)
	}
	e := entry("abc", ResultSucceeded)
	e.Changes = []drivers.Change{{Ref: drivers.Ref{Kind: "service", Name: "web"}, Action: drivers.ActionCreate}}
	if _, err := s.Record("web", e); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	s = openTest(t, dir, 0)
	got, err := s.App("web")
	if err != nil || got.Applied != "abc" || got.Pin == nil || got.Pin.Revision != "def" {
		t.Fatalf("App after reopen = %+v, %v", got, err)
	}
	h, _ := s.History("web", 0)
	if len(h) != 1 || len(h[0].Changes) != 1 || h[0].Changes[0].Ref.Name != "web" {
		t.Fatalf("history after reopen = %+v", h)
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file mode = %v, %v; want 0600", fi.Mode(), err)
	}
}

// TestCorruptStoreIsMovedAside covers the three ways a file goes bad: not a database at all,
// damaged meta pages, and damaged data pages behind valid meta pages.
func TestCorruptStoreIsMovedAside(t *testing.T) {
	cases := map[string]func(t *testing.T, path string){
		"not a database": func(t *testing.T, path string) {
			writeFile(t, path, []byte(strings.Repeat("garbage\n", 4096)))
		},
		"meta pages": func(t *testing.T, path string) {
			damage(t, path, 0, 8192)
		},
		"data pages": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			damage(t, path, 8192, fi.Size()-8192)
		},
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir, 0)
			for i := range 50 {
				if _, err := s.Record(fmt.Sprintf("app%d", i%5), entry(strings.Repeat("x", 200), ResultSucceeded)); err != nil {
					t.Fatal(err)
				}
			}
			_ = s.Close()
			corrupt(t, filepath.Join(dir, DBFile))

			s = openTest(t, dir, 0)
			rec := s.Recovered()
			if rec == nil {
				t.Fatal("a corrupt store was opened without being reported")
			}
			if _, err := os.Stat(rec.MovedTo); err != nil {
				t.Fatalf("the corrupt file is not kept at %s: %v", rec.MovedTo, err)
			}
			if _, err := s.Record("web", entry("new", ResultSucceeded)); err != nil {
				t.Fatalf("the fresh store does not take writes: %v", err)
			}
			if h, _ := s.History("app0", 0); len(h) != 0 {
				t.Fatalf("the fresh store holds %d old entries", len(h))
			}
		})
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// damage overwrites n bytes at off with a pattern no page header has.
func damage(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(strings.Repeat("\xa5", int(n))), off); err != nil {
		t.Fatal(err)
	}
}

func TestLockExcludesASecondWriter(t *testing.T) {
	dir := t.TempDir()
	first, err := TakeLock(dir, Exclusive, Holder{PID: 4242, Listen: "127.0.0.1:9420", Command: "serve", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = TakeLock(dir, Exclusive, Holder{PID: 1})
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLocked) {
		t.Fatalf("second exclusive lock: err = %v, want a HeldError", err)
	}
	if held.Holder.PID != 4242 || held.Holder.Listen != "127.0.0.1:9420" {
		t.Fatalf("holder = %+v, want the first process's record", held.Holder)
	}
	if _, err := TakeLock(dir, Shared, Holder{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock beside an exclusive one: err = %v, want ErrLocked", err)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	a, err := TakeLock(dir, Shared, Holder{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := TakeLock(dir, Shared, Holder{})
	if err != nil {
		t.Fatalf("two readers: %v", err)
	}
	if _, err := TakeLock(dir, Exclusive, Holder{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive lock beside readers: err = %v, want ErrLocked", err)
	}
	_ = a.Release()
	_ = b.Release()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode = %v, %v; want 0700", fi.Mode(), err)
	}
}
