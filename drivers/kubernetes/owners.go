package kubernetes

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// maxFieldsPerManager bounds a drift reason: a manager that rewrote a whole pod template
// would otherwise make the reason longer than the diff it summarises.
const maxFieldsPerManager = 8

// statusSubresource writers are controllers reporting, not people changing what was applied.
const statusSubresource = "status"

// takenFields says which manager changed which field: for every other field manager, the
// fields it owns in live that the forced dry-run apply (merged) takes back for shipwatch.
// Fields another manager shares with shipwatch at the same value are not conflicts, so the
// server leaves them with both and they are not listed. The result maps each manager to its
// sorted field paths in structured-merge-diff notation, e.g. ".spec.replicas".
func takenFields(live, merged *unstructured.Unstructured) (map[string][]string, error) {
	if live == nil || merged == nil {
		return nil, nil
	}
	ours, err := managerFields(merged, FieldManager)
	if err != nil {
		return nil, err
	}
	before, err := foreignFields(live)
	if err != nil {
		return nil, err
	}
	after, err := foreignFields(merged)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for manager, owned := range before {
		lost := owned.Intersection(ours)
		if kept, ok := after[manager]; ok {
			lost = lost.Difference(kept)
		}
		var paths []string
		lost.Leaves().Iterate(func(p fieldpath.Path) { paths = append(paths, p.String()) })
		if len(paths) > 0 {
			slices.Sort(paths)
			out[manager] = paths
		}
	}
	return out, nil
}

// managerFields is the union of the field sets manager owns in u outside the status
// subresource.
func managerFields(u *unstructured.Unstructured, manager string) (*fieldpath.Set, error) {
	all, err := foreignOrOwn(u, func(m string) bool { return m == manager })
	if err != nil {
		return nil, err
	}
	if s, ok := all[manager]; ok {
		return s, nil
	}
	return &fieldpath.Set{}, nil
}

// foreignFields maps every manager other than shipwatch to the fields it owns in u.
func foreignFields(u *unstructured.Unstructured) (map[string]*fieldpath.Set, error) {
	return foreignOrOwn(u, func(m string) bool { return m != FieldManager && m != "" })
}

func foreignOrOwn(u *unstructured.Unstructured, want func(string) bool) (map[string]*fieldpath.Set, error) {
	out := map[string]*fieldpath.Set{}
	for _, mf := range u.GetManagedFields() {
		if !want(mf.Manager) || mf.Subresource == statusSubresource || mf.FieldsV1 == nil {
			continue
		}
		s := &fieldpath.Set{}
		if err := s.FromJSON(mf.FieldsV1.GetRawReader()); err != nil {
			return nil, fmt.Errorf("read managed fields of %q: %w", mf.Manager, err)
		}
		if prev, ok := out[mf.Manager]; ok {
			s = prev.Union(s)
		}
		out[mf.Manager] = s
	}
	return out, nil
}

// driftReason words an update for a user: which manager changed which of shipwatch's
// fields, when another one did; a change that only Git made reads "differs from desired".
func driftReason(taken map[string][]string) string {
	if len(taken) == 0 {
		return "differs from desired"
	}
	return "differs from desired; " + summarise(taken, "%s changed %s")
}

// summarise words fields by manager, managers sorted, at most maxFieldsPerManager fields
// each: format takes the manager and the comma-separated fields (%[1]s, %[2]s).
func summarise(byManager map[string][]string, format string) string {
	var parts []string
	for _, manager := range slices.Sorted(maps.Keys(byManager)) {
		paths := byManager[manager]
		shown := paths[:min(len(paths), maxFieldsPerManager)]
		list := strings.Join(shown, ", ")
		if extra := len(paths) - len(shown); extra > 0 {
			list += fmt.Sprintf(" and %d more", extra)
		}
		parts = append(parts, fmt.Sprintf(format, manager, list))
	}
	return strings.Join(parts, "; ")
}
