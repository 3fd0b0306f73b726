package promotion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/shipwatch/shipwatch/reconciler"
	"github.com/shipwatch/shipwatch/source"
)

// dryRun shows what a promotion would change without writing anything: the files' diff
// against the target's branch, and the plan the target would get from its branch with them.
func (p *Promoter) dryRun(ctx context.Context, pl Pipeline, to Stage, files map[string][]byte, out Outcome) (Outcome, error) {
	out.Result = ResultDryRun
	head, err := p.opts.Git.Resolve(ctx, pl.Repo, "refs/heads/"+to.Branch)
	if err != nil {
		return out, err
	}
	dir, release, err := p.opts.Git.Hold(ctx, pl.Repo, to.Branch, head)
	if err != nil {
		return out, err
	}
	defer release()
	if out.Diff, err = p.fileDiff(pl, head, files); err != nil {
		return out, err
	}
	work, err := os.MkdirTemp("", "shipwatch-promote-")
	if err != nil {
		return out, err
	}
	defer os.RemoveAll(work)
	if err := copyDir(dir, work); err != nil {
		return out, fmt.Errorf("copy the target's checkout: %w", err)
	}
	for name, content := range files {
		target := filepath.Join(work, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return out, err
		}
		if err := os.WriteFile(target, content, 0o600); err != nil {
			return out, err
		}
	}
	plan, err := p.opts.Stages.Plan(ctx, to.Name, reconciler.PlanOptions{Worktree: work})
	if err != nil {
		return out, fmt.Errorf("plan %s with the promoted files: %w", to.Name, err)
	}
	out.Plan, out.PlanText = plan, plan.String()
	p.count(pl.App, to.Env, out.Result)
	return out, nil
}

// fileDiff renders the promotion files' change against the target branch's head.
func (p *Promoter) fileDiff(pl Pipeline, head string, files map[string][]byte) (string, error) {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(files)) {
		old, err := p.opts.Git.ReadFile(pl.Repo, head, name, maxPromotedFileBytes)
		if err != nil && !errors.Is(err, source.ErrNotFound) {
			return "", err
		}
		d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(string(old)), B: difflib.SplitLines(string(files[name])),
			FromFile: "a/" + name, ToFile: "b/" + name, Context: 3,
		})
		if err != nil {
			return "", err
		}
		b.WriteString(d)
	}
	return b.String(), nil
}

// copyDir copies a checkout into dst, writable, keeping symlinks as they are (the loader
// confines them).
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return copyFile(p, target)
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
