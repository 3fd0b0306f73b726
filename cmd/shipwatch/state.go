package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shipwatch/shipwatch/internal/state"
)

// openState takes the state dir's lock and opens its store: exclusively for the daemon and
// the verbs that deploy (one writer per stateDir), shared and read-only for the verbs that
// only read. When another process holds a conflicting lock it returns a *state.HeldError, so
// a verb can ask that daemon instead.
func (e *env) openState(mode state.LockMode, command string) error {
	holder := state.Holder{PID: os.Getpid(), Command: command, Since: time.Now().UTC()}
	if command == "serve" {
		holder.Listen = e.cfg.Listen
	}
	lock, err := takeLock(e.cfg.StateDir, mode, holder)
	if err != nil {
		return err
	}
	store, err := state.Open(state.Options{
		Dir: e.cfg.StateDir, HistoryLimit: e.cfg.History.Limit, ReadOnly: mode == state.Shared, Logger: e.log,
	})
	if mode == state.Shared && errors.Is(err, os.ErrNotExist) {
		e.lock = lock // nothing recorded yet: a reader sees an empty store
		return nil
	}
	if err != nil {
		_ = lock.Release()
		return err
	}
	e.lock, e.store, e.exclusive = lock, store, mode == state.Exclusive
	if rec := store.Recovered(); rec != nil {
		e.metrics.StateStoreResets.Inc()
		e.warnings = append(e.warnings, fmt.Sprintf(
			"state store was unreadable (%v) and was started afresh; the old file is %s: history before that is lost and pins must be set again",
			rec.Err, rec.MovedTo))
	}
	return nil
}

// lockPatience bounds how long a verb waits for a state dir held by a short-lived verb (a
// history or diff reading it): a daemon holding it is reported at once.
const lockPatience = 5 * time.Second

func takeLock(dir string, mode state.LockMode, h state.Holder) (*state.Lock, error) {
	deadline := time.Now().Add(lockPatience)
	for {
		lock, err := state.TakeLock(dir, mode, h)
		var held *state.HeldError
		if err == nil || !errors.As(err, &held) || held.Holder.Command == "serve" || time.Now().After(deadline) {
			return lock, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// daemonHolds reports whether err says a daemon that serves the API holds the state dir:
// then a verb goes through that daemon.
func daemonHolds(err error) (state.Holder, bool) {
	var held *state.HeldError
	if errors.As(err, &held) && held.Holder.Command == "serve" && held.Holder.Listen != "" {
		return held.Holder, true
	}
	return state.Holder{}, false
}
