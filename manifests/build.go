package manifests

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// BuildContext is a service's `build:` resolved inside the checkout: what the Docker
// driver sends to the Engine to build the service's image.
type BuildContext struct {
	// Root is the checkout root (absolute); the context is read through os.Root on it.
	Root string
	// Dir is the context directory relative to Root with symlinks resolved, slash-separated
	// ("." for the root itself).
	Dir string
	// Rel is the context directory relative to the checkout as the compose file names it,
	// for messages.
	Rel string
	// Dockerfile is the Dockerfile's path inside the context, slash-separated.
	Dockerfile string
	// Digest is "sha256:<hex>" over the files the build sends (after .dockerignore): sorted
	// paths, modes, contents and symlink targets. Equal contexts have equal digests.
	Digest string
}

// ErrContextChanged means a build context no longer matches the digest it was planned
// with: the checkout changed under shipwatch, and the plan must be made again.
var ErrContextChanged = errors.New("build context changed since it was planned")

// isRemoteContext reports contexts the Docker CLI would fetch (git or http URLs).
func isRemoteContext(p string) bool {
	return isRemote(p) || strings.HasPrefix(p, "github.com/")
}

// serviceBuild confines a service's build section and digests its context. It rewrites
// svc.Build.Context to the absolute path, as compose-go would with resolved paths.
func (l *composeLoad) serviceBuild(name string, svc *types.ServiceConfig) (BuildContext, error) {
	b := svc.Build
	key := fmt.Sprintf("services.%s.build.context", name)
	if isRemoteContext(b.Context) {
		return BuildContext{}, l.locateErr(&UnsupportedError{Service: name, Key: "build.context", Value: b.Context,
			Hint: "remote build contexts are not supported: build from a directory in the repository"})
	}
	if b.DockerfileInline != "" || b.Dockerfile == "" {
		return BuildContext{}, l.locateErr(&UnsupportedError{Service: name, Key: "build.dockerfile_inline", Hint: buildHint})
	}
	ctxAbs, err := l.confined(b.Context, key)
	if err != nil {
		return BuildContext{}, err
	}
	dir, _ := l.c.check(ctxAbs, key) // checked by confined
	fi, err := l.root.Stat(dir)
	if err != nil || !fi.IsDir() {
		return BuildContext{}, fmt.Errorf("%s: %s %s is not a directory in the checkout", l.fileNames(), key, l.c.rel(ctxAbs))
	}
	dfKey := fmt.Sprintf("services.%s.build.dockerfile", name)
	dfPath := b.Dockerfile
	if !filepath.IsAbs(dfPath) {
		dfPath = filepath.Join(ctxAbs, dfPath)
	}
	dfAbs, err := l.confined(dfPath, dfKey)
	if err != nil {
		return BuildContext{}, err
	}
	dfRel, _ := l.c.check(dfAbs, dfKey)
	if !within(dir, dfRel) || dfRel == dir {
		return BuildContext{}, fmt.Errorf("%s: %s %s must be inside the build context %s (the classic builder reads it from there)",
			l.fileNames(), dfKey, l.c.rel(dfAbs), l.c.rel(ctxAbs))
	}
	inCtx, _ := filepath.Rel(dir, dfRel)
	if fi, err := l.root.Stat(dfRel); err != nil || !fi.Mode().IsRegular() {
		return BuildContext{}, fmt.Errorf("%s: %s %s is not a file in the checkout", l.fileNames(), dfKey, l.c.rel(dfAbs))
	}
	bc := BuildContext{Root: l.c.root, Dir: filepath.ToSlash(dir), Rel: l.c.rel(ctxAbs), Dockerfile: filepath.ToSlash(inCtx)}
	if bc.Digest, err = contextDigest(l.root.FS(), bc); err != nil {
		return BuildContext{}, fmt.Errorf("%s: build context %s: %w", l.fileNames(), bc.Rel, err)
	}
	b.Context = ctxAbs
	return bc, nil
}

// buildHint lists what shipwatch builds with.
const buildHint = "supported under build: context, dockerfile, args, target, labels, no_cache"

// locateErr fills in the file and line of an UnsupportedError.
func (l *composeLoad) locateErr(e *UnsupportedError) error {
	e.File, e.Line = l.locate(e.Service, e.Key)
	return e
}

// contextEntry is one file, directory or symlink of a build context.
type contextEntry struct {
	// name is the path inside the context, slash-separated; fsPath the path in the FS.
	name, fsPath string
	info         fs.FileInfo
	link         string
}

// hashEntry writes one digest record: name, mode, then the content digest, the link
// target, or nothing for a directory.
func hashEntry(h io.Writer, e contextEntry, content []byte) {
	fmt.Fprintf(h, "%s\x00%s\x00", e.name, e.info.Mode().String())
	switch {
	case e.link != "":
		fmt.Fprintf(h, "%s\n", e.link)
	case e.info.IsDir():
		fmt.Fprint(h, "\n")
	default:
		fmt.Fprintf(h, "%x\n", sha256.Sum256(content))
	}
}

// readEntry returns a regular file's content; nil for directories and symlinks. Files are
// read whole, one at a time: a tar header needs the size first, and the digest must cover
// what is sent. MaxBuildFileBytes bounds each.
func readEntry(fsys fs.FS, e contextEntry) ([]byte, error) {
	if e.link != "" || e.info.IsDir() {
		return nil, nil
	}
	return readFSFile(fsys, e.fsPath, MaxBuildFileBytes)
}

// contextDigest is the digest of the build context b.
func contextDigest(fsys fs.FS, b BuildContext) (string, error) {
	h := sha256.New()
	err := walkContext(fsys, b, func(e contextEntry) error {
		content, err := readEntry(fsys, e)
		if err != nil {
			return err
		}
		hashEntry(h, e, content)
		return nil
	})
	if err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// walkContext calls fn for every entry the build would send, in lexical order. Symlinks are not followed; one whose
// target leaves the checkout is an error naming it.
func walkContext(fsys fs.FS, b BuildContext, fn func(contextEntry) error) error {
	ign, err := readIgnore(fsys, b.Dir)
	if err != nil {
		return err
	}
	count := &entryCounter{key: "build context", rel: b.Dir}
	return fs.WalkDir(fsys, b.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == b.Dir {
			return nil
		}
		if err := count.visit(); err != nil {
			return err
		}
		name := strings.TrimPrefix(p, strings.TrimSuffix(b.Dir, "/")+"/")
		if b.Dir == "." {
			name = p
		}
		skip, err := ign.excluded(name)
		if err != nil {
			return fmt.Errorf("%s: .dockerignore: %w", p, err)
		}
		if name != b.Dockerfile && name != ".dockerignore" && skip {
			if d.IsDir() && !ign.hasExceptions {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := contextEntry{name: name, fsPath: p, info: info}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if e.link, err = fs.ReadLink(fsys, p); err != nil {
				return err
			}
			target := path.Join(path.Dir(p), e.link)
			if path.IsAbs(e.link) || target == ".." || strings.HasPrefix(target, "../") {
				return &EscapeError{Ref: p, Key: "build context symlink", Via: p}
			}
		case info.IsDir(), info.Mode().IsRegular():
		default:
			return fmt.Errorf("%s: not a regular file, directory or symlink", p)
		}
		return fn(e)
	})
}

// WriteContext streams the build context of b as a tar archive, exactly the entries its
// digest covers, and fails with ErrContextChanged when the files no longer match it.
// Files are read through os.Root, so nothing outside the checkout can be sent.
func WriteContext(ctx context.Context, w io.Writer, b BuildContext) error {
	root, err := os.OpenRoot(b.Root)
	if err != nil {
		return fmt.Errorf("open checkout: %w", err)
	}
	defer root.Close()
	fsys := root.FS()
	h := sha256.New()
	tw := tar.NewWriter(w)
	err = walkContext(fsys, b, func(e contextEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		content, err := readEntry(fsys, e)
		if err != nil {
			return err
		}
		hashEntry(h, e, content)
		return writeTarEntry(tw, e, content)
	})
	if err != nil {
		return fmt.Errorf("build context %s: %w", b.Rel, err)
	}
	// Checked before the archive is closed: without its end marker the Engine never builds
	// from content other than what was planned.
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != b.Digest {
		return fmt.Errorf("build context %s: %w", b.Rel, ErrContextChanged)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("build context %s: %w", b.Rel, err)
	}
	return nil
}

// epoch is the modification time of every archived entry: the digest ignores times, so
// the archive must not depend on them either.
var epoch = time.Unix(0, 0)

func writeTarEntry(tw *tar.Writer, e contextEntry, content []byte) error {
	hdr := &tar.Header{Name: e.name, Mode: int64(e.info.Mode().Perm()), ModTime: epoch, Format: tar.FormatPAX}
	switch {
	case e.link != "":
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		return tw.WriteHeader(hdr)
	case e.info.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.name+"/"
		return tw.WriteHeader(hdr)
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(content))
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(content)
	return err
}

// ignoreRules are a context's .dockerignore patterns, matched with the Docker CLI's own
// matcher so the files sent are the ones `docker build` would send.
type ignoreRules struct {
	pm *patternmatcher.PatternMatcher
	// hasExceptions: a "!" pattern may re-include a file below an excluded directory, so
	// such a directory must still be walked.
	hasExceptions bool
}

// readIgnore reads dir/.dockerignore the way the Docker CLI does (ignorefile.ReadAll:
// comments, blank lines, "!" exceptions, a leading "/" dropped, paths cleaned).
func readIgnore(fsys fs.FS, dir string) (*ignoreRules, error) {
	content, err := readFSFile(fsys, path.Join(dir, ".dockerignore"), MaxParsedFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return &ignoreRules{}, nil
	}
	if errors.Is(err, ErrTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	return parseIgnore(content)
}

func parseIgnore(content []byte) (*ignoreRules, error) {
	patterns, err := ignorefile.ReadAll(bytes.NewReader(content))
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf(".dockerignore: %w", err)
	}
	return &ignoreRules{pm: pm, hasExceptions: pm.Exclusions()}, nil
}

// excluded reports whether name (slash-separated, relative to the context) is left out; a
// pattern matching a parent directory matches everything below it, as in Docker.
func (ig *ignoreRules) excluded(name string) (bool, error) {
	if ig.pm == nil {
		return false, nil
	}
	return ig.pm.MatchesOrParentMatches(filepath.FromSlash(name))
}

// builds confines and digests the build section of every deployed service that has one.
func (l *composeLoad) builds(p *types.Project) (map[string]BuildContext, error) {
	out := map[string]BuildContext{}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		svc := p.Services[name]
		if svc.Build == nil {
			continue
		}
		b := *svc.Build
		svc.Build = &b
		bc, err := l.serviceBuild(name, &svc)
		if err != nil {
			return nil, err
		}
		out[name] = bc
		p.Services[name] = svc
	}
	return out, nil
}
