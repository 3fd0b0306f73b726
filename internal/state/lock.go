package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockFile is the lock's name under stateDir.
const LockFile = "shipwatch.lock"

// ErrLocked is wrapped when another process holds the state dir.
var ErrLocked = errors.New("state dir is in use by another shipwatch process")

// Holder is what the process holding the lock wrote about itself, so that a second process
// can say who holds it and a CLI verb can reach that daemon's API instead.
type Holder struct {
	PID int `json:"pid"`
	// Listen is the holder's HTTP address; empty when it serves none (a one-shot verb).
	Listen  string    `json:"listen,omitempty"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

// HeldError is the ErrLocked error, with what the holder wrote.
type HeldError struct {
	Dir    string
	Holder Holder
}

func (e *HeldError) Error() string {
	h := e.Holder
	msg := fmt.Sprintf("state dir %s is in use by another shipwatch process", e.Dir)
	if h.PID > 0 {
		msg += fmt.Sprintf(" (pid %d, shipwatch %s since %s", h.PID, h.Command, h.Since.Format(time.RFC3339))
		if h.Listen != "" {
			msg += ", listening on " + h.Listen
		}
		msg += ")"
	}
	return msg + "; one daemon per stateDir"
}

func (e *HeldError) Unwrap() error { return ErrLocked }

// Lock is an advisory lock on a state dir (flock on stateDir/shipwatch.lock). The kernel
// drops it when the process dies, so a SIGKILLed daemon never leaves a stale lock.
type Lock struct {
	f    *os.File
	mode LockMode
}

// LockMode says whether a lock excludes everyone else or only writers.
type LockMode int

// Exclusive is for the daemon and verbs that write (sync, rollback, unpin); Shared is for
// verbs that only read (history), several at once.
const (
	Exclusive LockMode = iota
	Shared
)

// TakeLock locks dir without waiting. It fails with a *HeldError when another process holds
// a conflicting lock. An exclusive holder records h in the file for others to read.
func TakeLock(dir string, mode LockMode, h Holder) (*Lock, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	how := syscall.LOCK_EX
	if mode == Shared {
		how = syscall.LOCK_SH
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		held := &HeldError{Dir: dir}
		if b, rerr := os.ReadFile(path); rerr == nil {
			_ = json.Unmarshal(b, &held.Holder)
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, held
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if mode == Exclusive {
		b, _ := json.Marshal(h)
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt(append(b, '\n'), 0)
		}
	}
	return &Lock{f: f, mode: mode}, nil
}

// ReadHolder returns what the current exclusive holder of dir wrote; ok is false when
// nothing is recorded.
func ReadHolder(dir string) (Holder, bool) {
	var h Holder
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil || json.Unmarshal(b, &h) != nil || h.PID == 0 {
		return Holder{}, false
	}
	return h, true
}

// Release drops the lock. The file stays: removing it would let a third process lock a
// new inode while a second still waits on the old one.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	if l.mode == Exclusive {
		_ = l.f.Truncate(0)
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// ensureDir creates dir 0700, or tightens an existing one that others could read: it holds
// checkouts, copies of secret files and history with diffs.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restrict state dir %s to its owner: %w", dir, err)
		}
	}
	return nil
}
