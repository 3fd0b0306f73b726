package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DBFile is the database's name under stateDir.
const DBFile = "state.db"

// DefaultHistoryLimit is how many entries an app keeps when Options.HistoryLimit is 0.
const DefaultHistoryLimit = 100

// ErrNotFound is returned for a history entry that does not exist (or was dropped).
var ErrNotFound = errors.New("not found")

var (
	bucketApps    = []byte("apps")
	bucketHistory = []byte("history")
	keyRecord     = []byte("record")
)

// Options configures Open.
type Options struct {
	// Dir is the state dir; the database is Dir/state.db.
	Dir string
	// HistoryLimit bounds each app's history; the oldest entries are dropped. Default 100.
	HistoryLimit int
	// ReadOnly opens for reading only (a verb that lists history).
	ReadOnly bool
	Logger   *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Recovery says that the database could not be read at Open and was moved aside.
type Recovery struct {
	// MovedTo is where the unreadable file now is.
	MovedTo string
	// Err is why it could not be read.
	Err error
}

// Store is the bbolt database. Its methods are safe for concurrent use; bbolt serialises
// writers. The caller holds the state dir's Lock.
type Store struct {
	db       *bolt.DB
	path     string
	limit    int
	recovery *Recovery
}

// Open opens Dir/state.db, creating it 0600. A file that cannot be read (not a bbolt file,
// bad checksums, a corrupt page, undecodable records) is moved aside as
// state.db.corrupt-<unix time> and a fresh database started, so that a bad store never
// stops deploys; Recovery reports it. A read-only Open never moves anything.
func Open(opts Options) (*Store, error) {
	if opts.HistoryLimit <= 0 {
		opts.HistoryLimit = DefaultHistoryLimit
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := ensureDir(opts.Dir); err != nil {
		return nil, err
	}
	path := filepath.Join(opts.Dir, DBFile)
	s := &Store{path: path, limit: opts.HistoryLimit}
	db, cause := openChecked(path, opts.ReadOnly)
	if cause == nil {
		s.db = db
		return s, nil
	}
	if opts.ReadOnly || errors.Is(cause, os.ErrPermission) || errors.Is(cause, os.ErrNotExist) ||
		errors.Is(cause, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open state %s: %w", path, cause)
	}
	moved := fmt.Sprintf("%s.corrupt-%d", path, opts.Now().Unix())
	if err := os.Rename(path, moved); err != nil {
		return nil, fmt.Errorf("open state %s: %w (and could not move it aside: %w)", path, cause, err)
	}
	opts.Logger.Error("state store unreadable: moved aside, starting afresh", "err", cause, "resource", moved)
	db, err := openChecked(path, false)
	if err != nil {
		return nil, fmt.Errorf("open fresh state %s: %w", path, err)
	}
	s.db = db
	s.recovery = &Recovery{MovedTo: moved, Err: cause}
	return s, nil
}

// openChecked opens the database and reads every record once, so that corruption is found
// now, when it can be moved aside, rather than in the middle of a pass. bbolt panics on some
// corrupt pages; that is turned into an error here.
func openChecked(path string, readOnly bool) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, fmt.Errorf("corrupt database: %v", p)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, err
	}
	if err := db.View(walk); err != nil {
		_ = db.Close()
		return nil, err
	}
	if readOnly {
		return db, nil
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketApps)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// walk decodes every record and history entry.
func walk(tx *bolt.Tx) error {
	apps := tx.Bucket(bucketApps)
	if apps == nil {
		return nil
	}
	return apps.ForEachBucket(func(name []byte) error {
		b := apps.Bucket(name)
		if raw := b.Get(keyRecord); raw != nil {
			var rec AppRecord
			if err := json.Unmarshal(raw, &rec); err != nil {
				return fmt.Errorf("app %s: record: %w", name, err)
			}
		}
		h := b.Bucket(bucketHistory)
		if h == nil {
			return nil
		}
		return h.ForEach(func(k, v []byte) error {
			var e Entry
			if len(k) != 8 || json.Unmarshal(v, &e) != nil {
				return fmt.Errorf("app %s: history entry %x is unreadable", name, k)
			}
			return nil
		})
	})
}

// Recovered returns what Open found unreadable, or nil.
func (s *Store) Recovered() *Recovery { return s.recovery }

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// App returns an app's record; a new app's is empty.
func (s *Store) App(app string) (AppRecord, error) {
	var rec AppRecord
	err := s.view(func(tx *bolt.Tx) error {
		b := appBucket(tx, app)
		if b == nil {
			return nil
		}
		if raw := b.Get(keyRecord); raw != nil {
			return json.Unmarshal(raw, &rec)
		}
		return nil
	})
	if err != nil {
		return AppRecord{}, fmt.Errorf("read state of app %s: %w", app, err)
	}
	return rec, nil
}

// SaveApp replaces an app's record.
func (s *Store) SaveApp(app string, rec AppRecord) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		b, err := createAppBucket(tx, app)
		if err != nil {
			return err
		}
		return b.Put(keyRecord, raw)
	})
	if err != nil {
		return fmt.Errorf("save state of app %s: %w", app, err)
	}
	return nil
}

// Record appends e to the app's history and returns it with its ID. A failure identical to
// the newest entry (same revision, stage and error) is folded into it instead: its Attempts
// grows and its Finished moves. Beyond the history limit the oldest entries are dropped.
func (s *Store) Record(app string, e Entry) (Entry, error) {
	err := s.update(func(tx *bolt.Tx) error {
		b, err := createAppBucket(tx, app)
		if err != nil {
			return err
		}
		h, err := b.CreateBucketIfNotExists(bucketHistory)
		if err != nil {
			return err
		}
		if k, v := h.Cursor().Last(); k != nil {
			var prev Entry
			if json.Unmarshal(v, &prev) == nil && e.sameFailure(prev) {
				prev.Attempts = max(prev.Attempts, 1) + 1
				prev.Finished = e.Finished
				e = prev
				return putEntry(h, e)
			}
		}
		if e.ID, err = h.NextSequence(); err != nil {
			return err
		}
		if err := putEntry(h, e); err != nil {
			return err
		}
		return trim(h, s.limit)
	})
	if err != nil {
		return Entry{}, fmt.Errorf("record history of app %s: %w", app, err)
	}
	return e, nil
}

func putEntry(h *bolt.Bucket, e Entry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return h.Put(idKey(e.ID), raw)
}

// trim drops the oldest entries until at most limit remain.
func trim(h *bolt.Bucket, limit int) error {
	var keys [][]byte
	c := h.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		keys = append(keys, k)
	}
	// Keys are collected first: deleting under a cursor makes its Next skip an entry.
	for _, k := range keys[:max(len(keys)-limit, 0)] {
		if err := h.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// History returns up to limit entries of the app, newest first; limit <= 0 means all kept.
func (s *Store) History(app string, limit int) ([]Entry, error) {
	var out []Entry
	err := s.view(func(tx *bolt.Tx) error {
		b := appBucket(tx, app)
		if b == nil || b.Bucket(bucketHistory) == nil {
			return nil
		}
		c := b.Bucket(bucketHistory).Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("entry %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history of app %s: %w", app, err)
	}
	return out, nil
}

// Entry returns one history entry of the app.
func (s *Store) Entry(app string, id uint64) (Entry, error) {
	var e Entry
	err := s.view(func(tx *bolt.Tx) error {
		b := appBucket(tx, app)
		if b == nil || b.Bucket(bucketHistory) == nil {
			return ErrNotFound
		}
		raw := b.Bucket(bucketHistory).Get(idKey(id))
		if raw == nil {
			return ErrNotFound
		}
		return json.Unmarshal(raw, &e)
	})
	if err != nil {
		return Entry{}, fmt.Errorf("history entry %d of app %s: %w", id, app, err)
	}
	return e, nil
}

func appBucket(tx *bolt.Tx, app string) *bolt.Bucket {
	apps := tx.Bucket(bucketApps)
	if apps == nil {
		return nil
	}
	return apps.Bucket([]byte(app))
}

func createAppBucket(tx *bolt.Tx, app string) (*bolt.Bucket, error) {
	apps, err := tx.CreateBucketIfNotExists(bucketApps)
	if err != nil {
		return nil, err
	}
	return apps.CreateBucketIfNotExists([]byte(app))
}

func idKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, id)
}

// view and update turn a bbolt panic (a page corrupted after Open) into an error, so a bad
// store fails the call, never the daemon.
func (s *Store) view(f func(*bolt.Tx) error) (err error) {
	defer recoverInto(&err)
	return s.db.View(f)
}

func (s *Store) update(f func(*bolt.Tx) error) (err error) {
	defer recoverInto(&err)
	return s.db.Update(f)
}

func recoverInto(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("corrupt database: %v", p)
	}
}

var (
	keyApprovals = []byte("approvals")
	keyPromoted  = []byte("promoted")
)

// maxApprovals bounds the approvals an app keeps; the oldest go first.
const maxApprovals = 20

// Approve records an approval for app (the target stage). The reconciler's record is kept
// apart from approvals and promotions, so that neither write overwrites the other.
func (s *Store) Approve(app string, a Approval) error {
	var list []Approval
	if err := s.readJSON(app, keyApprovals, &list); err != nil {
		return err
	}
	list = append(list, a)
	if len(list) > maxApprovals {
		list = list[len(list)-maxApprovals:]
	}
	return s.writeJSON(app, keyApprovals, list)
}

// Approvals returns app's approvals, oldest first.
func (s *Store) Approvals(app string) ([]Approval, error) {
	var list []Approval
	return list, s.readJSON(app, keyApprovals, &list)
}

// SetPromoted records the last promotion into app (the target stage).
func (s *Store) SetPromoted(app string, p Promotion) error {
	return s.writeJSON(app, keyPromoted, p)
}

// Promoted returns the last promotion into app; ok is false when there was none.
func (s *Store) Promoted(app string) (p Promotion, ok bool, err error) {
	err = s.readJSON(app, keyPromoted, &p)
	return p, p.SourceRevision != "", err
}

func (s *Store) readJSON(app string, key []byte, v any) error {
	err := s.view(func(tx *bolt.Tx) error {
		b := appBucket(tx, app)
		if b == nil {
			return nil
		}
		if raw := b.Get(key); raw != nil {
			return json.Unmarshal(raw, v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s of app %s: %w", key, app, err)
	}
	return nil
}

func (s *Store) writeJSON(app string, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		b, err := createAppBucket(tx, app)
		if err != nil {
			return err
		}
		return b.Put(key, raw)
	})
	if err != nil {
		return fmt.Errorf("write %s of app %s: %w", key, app, err)
	}
	return nil
}
