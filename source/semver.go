package source

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// SemverPrefix starts a ref that names a semantic version range over the repository's tags
// rather than one ref: "semver:>=1.2.0 <2". Git ref names cannot hold a ':', so such a ref
// never collides with a branch or a tag.
const SemverPrefix = "semver:"

// maxTagsInError bounds the tags an unmatched constraint lists in its error.
const maxTagsInError = 5

// ParseSemverRef reports whether ref is a semver range ref (SemverPrefix followed by a
// constraint) and returns its constraint. err wraps ErrConfig when the constraint does not
// parse. It needs no network, so a configuration can be checked before any repo is read.
func ParseSemverRef(ref string) (constraint string, ok bool, err error) {
	rest, ok := strings.CutPrefix(ref, SemverPrefix)
	if !ok {
		return "", false, nil
	}
	constraint = strings.TrimSpace(rest)
	return constraint, true, CheckSemver(constraint)
}

// CheckSemver returns an error wrapping ErrConfig when constraint is not a valid semver
// constraint (the syntax of github.com/Masterminds/semver/v3: ">=1.2.0 <2", "~1.2",
// "^1", "1.2.x", ranges joined by "||").
func CheckSemver(constraint string) error {
	_, err := parseSemverConstraint(constraint)
	return err
}

func parseSemverConstraint(constraint string) (*semver.Constraints, error) {
	if strings.TrimSpace(constraint) == "" {
		return nil, fmt.Errorf("%w: empty semver constraint", ErrConfig)
	}
	cs, err := semver.NewConstraint(constraint)
	if err != nil {
		return nil, fmt.Errorf("%w: semver constraint %q: %w", ErrConfig, constraint, err)
	}
	return cs, nil
}

// tagVersion is a tag whose name is a semantic version.
type tagVersion struct {
	name    string // full ref name, refs/tags/...
	version *semver.Version
}

// parseTagVersion parses a tag name as a strict semantic version (MAJOR.MINOR.PATCH with
// optional pre-release and build), allowing one leading "v". Partial names such as "v1" or
// "1.2" are not versions: they are often moving tags (v1 → the latest 1.x.y).
func parseTagVersion(tag string) (*semver.Version, bool) {
	v, err := semver.StrictNewVersion(strings.TrimPrefix(tag, "v"))
	if err != nil {
		return nil, false
	}
	return v, true
}

// versionTags lists the tags among refs whose names are semantic versions, highest first.
// Equal versions (v1.2.0 and 1.2.0, or builds that differ only in metadata) are ordered
// by name, so the pick among them is stable.
func versionTags(refs map[string]string) []tagVersion {
	var tags []tagVersion
	for name := range refs {
		tag, ok := strings.CutPrefix(name, "refs/tags/")
		if !ok || strings.HasSuffix(name, peeledSuffix) {
			continue
		}
		if v, ok := parseTagVersion(tag); ok {
			tags = append(tags, tagVersion{name: name, version: v})
		}
	}
	slices.SortFunc(tags, func(a, b tagVersion) int {
		if c := b.version.Compare(a.version); c != 0 {
			return c
		}
		return cmp.Compare(b.name, a.name)
	})
	return tags
}

// pickSemver returns the full name and hash (peeled when the server advertised it) of the
// highest version tag satisfying constraint. Pre-releases match only a constraint that
// names a pre-release itself, as in the common semver libraries.
func pickSemver(refs map[string]string, constraint string) (string, string, error) {
	cs, err := parseSemverConstraint(constraint)
	if err != nil {
		return "", "", err
	}
	tags := versionTags(refs)
	for _, t := range tags {
		if !cs.Check(t.version) {
			continue
		}
		if h, ok := refs[t.name+peeledSuffix]; ok {
			return t.name, h, nil
		}
		return t.name, refs[t.name], nil
	}
	return "", "", fmt.Errorf("%w: no tag matches semver %q (%s)", ErrNotFound, constraint, describeTags(tags))
}

// describeTags names the highest version tags, at most maxTagsInError of them.
func describeTags(tags []tagVersion) string {
	if len(tags) == 0 {
		return "no tag is a semantic version"
	}
	names := make([]string, 0, maxTagsInError)
	for _, t := range tags[:min(len(tags), maxTagsInError)] {
		names = append(names, strings.TrimPrefix(t.name, "refs/tags/"))
	}
	s := "highest version tags: " + strings.Join(names, ", ")
	if more := len(tags) - len(names); more > 0 {
		s += fmt.Sprintf(" and %d lower", more)
	}
	return s
}
