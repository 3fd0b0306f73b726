package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// serviceFiles lists, per deployed service, the repo files it reads at run time with
// their digests, so a content change at the same compose text still changes the spec.
func (l *composeLoad) serviceFiles(p *types.Project) (map[string][]RepoFile, error) {
	out := map[string][]RepoFile{}
	digests := map[string]RepoFile{} // a file shared by services is hashed once
	for _, name := range p.ServiceNames() {
		svc := p.Services[name]
		var paths []string
		for _, v := range svc.Volumes {
			if v.Type == types.VolumeTypeBind && within(l.c.root, v.Source) {
				paths = append(paths, v.Source)
			}
		}
		for _, ref := range svc.Configs {
			cfg, ok := p.Configs[ref.Source]
			if ok && cfg.File != "" {
				paths = append(paths, cfg.File)
			}
		}
		for _, ref := range svc.Secrets {
			sec, ok := p.Secrets[ref.Source]
			if ok && sec.File != "" {
				paths = append(paths, sec.File)
			}
		}
		slices.Sort(paths)
		paths = slices.Compact(paths)
		var files []RepoFile
		for _, path := range paths {
			rf, ok := digests[path]
			if !ok {
				var err error
				rf, err = l.digest(path, name)
				if err != nil {
					return nil, err
				}
				digests[path] = rf
			}
			files = append(files, rf)
		}
		if len(files) > 0 {
			out[name] = files
		}
	}
	return out, nil
}

// digest hashes a confined file or directory. Symlinks inside a directory are hashed by
// their target text and never followed: Docker resolves them inside the container.
func (l *composeLoad) digest(abs, service string) (RepoFile, error) {
	key := fmt.Sprintf("services.%s file", service)
	rel, err := l.c.check(abs, key)
	if err != nil {
		return RepoFile{}, err
	}
	fi, err := l.root.Stat(rel)
	if isNotExist(err) {
		// Docker would create it, writing into the checkout: refuse instead.
		return RepoFile{}, fmt.Errorf("%s %s does not exist in the checkout", key, l.c.rel(abs))
	}
	if err != nil {
		return RepoFile{}, fmt.Errorf("%s %s: %w", key, l.c.rel(abs), err)
	}
	rf := RepoFile{Path: abs, Rel: l.c.rel(abs), Dir: fi.IsDir()}
	h := sha256.New()
	if fi.IsDir() {
		err = hashDir(l.root.FS(), rel, &entryCounter{key: key, rel: rf.Rel}, h)
	} else if err = checkSize(fi, key, rf.Rel, MaxRepoFileBytes); err == nil {
		err = hashFile(l.root.FS(), rel, fi.Mode(), h)
	}
	if errors.Is(err, ErrTooLarge) {
		return RepoFile{}, err
	}
	if err != nil {
		return RepoFile{}, fmt.Errorf("digest %s: %w", rf.Rel, err)
	}
	rf.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return rf, nil
}

func hashFile(fsys fs.FS, name string, mode fs.FileMode, w io.Writer) error {
	fmt.Fprintf(w, "%o\x00", mode.Perm())
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// hashDir writes one record per entry in lexical order (fs.WalkDir sorts), each with the
// path relative to the directory, the mode, and the content digest or link target. Files
// are bounded by MaxRepoFileBytes and the walk by MaxTreeEntries.
func hashDir(fsys fs.FS, dir string, count *entryCounter, w io.Writer) error {
	return fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := count.visit(); err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := checkSize(info, count.key, p, MaxRepoFileBytes); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\x00%s\x00", rel, info.Mode().String())
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\n", target)
		case d.Type().IsRegular():
			h := sha256.New()
			if err := hashFile(fsys, p, info.Mode(), h); err != nil {
				return err
			}
			fmt.Fprintf(w, "%x\n", h.Sum(nil))
		default:
			fmt.Fprint(w, "\n")
		}
		return nil
	})
}
