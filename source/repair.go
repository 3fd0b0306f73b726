package source

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var (
	looseRef  = regexp.MustCompile(`^([0-9a-f]{40}|ref: \S+)\n?$`)
	packedRef = regexp.MustCompile(`^([0-9a-f]{40} \S+|\^[0-9a-f]{40}|#.*)$`)
)

// repairRepos looks at every cached bare repository as a process killed mid-write leaves
// it: a repository whose refs are damaged (an empty or half-written ref file) is removed,
// to be fetched again, since go-git would otherwise fail every later fetch of it; leftover
// temporary packs are removed. The cache holds nothing that Git does not.
func (c *Cache) repairRepos() error {
	entries, err := os.ReadDir(c.reposDir())
	if err != nil {
		return fmt.Errorf("source cache: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), ".git") {
			continue
		}
		dir := filepath.Join(c.reposDir(), e.Name())
		if bad := damagedRef(dir); bad != "" {
			c.log.Warn("git cache damaged by an interrupted write: fetching it again",
				"repo", strings.TrimSuffix(e.Name(), ".git"), "resource", bad)
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("source cache: remove damaged %s: %w", e.Name(), err)
			}
			continue
		}
		tmp, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "tmp_*"))
		for _, f := range tmp {
			_ = os.Remove(f)
		}
	}
	return nil
}

// damagedRef returns the first ref file of the bare repository dir that is not a ref, or "".
func damagedRef(dir string) string {
	bad := ""
	check := func(path string, ok func([]byte) bool) {
		b, err := os.ReadFile(path)
		if bad == "" && err == nil && !ok(b) {
			bad = path
		}
	}
	check(filepath.Join(dir, "HEAD"), looseRef.Match)
	check(filepath.Join(dir, "packed-refs"), func(b []byte) bool {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if !packedRef.MatchString(sc.Text()) {
				return false
			}
		}
		return sc.Err() == nil
	})
	_ = filepath.WalkDir(filepath.Join(dir, "refs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			check(p, looseRef.Match)
		}
		return nil
	})
	return bad
}
