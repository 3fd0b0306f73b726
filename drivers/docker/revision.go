package docker

import (
	"cmp"

	"github.com/shipwatch/shipwatch/drivers"
)

// liveRevision reads the revision that runs from the app's containers: the revision label of
// the one created last. Containers are created or recreated only when their service changes,
// so a revision that changed no service leaves no trace here: the record is incomplete, and
// the reconciler's store takes precedence over it (see drivers.LiveRevision).
func liveRevision(app string, containers []ObservedContainer) drivers.LiveRevision {
	var newest *ObservedContainer
	for i := range containers {
		c := &containers[i]
		if c.Labels[LabelApp] != app || c.Labels[LabelRevision] == "" || isTemporary(c) {
			continue
		}
		if newest == nil || cmp.Or(cmp.Compare(c.Created, newest.Created), cmp.Compare(c.Name, newest.Name)) > 0 {
			newest = c
		}
	}
	if newest == nil {
		return drivers.LiveRevision{}
	}
	return drivers.LiveRevision{Revision: newest.Labels[LabelRevision]}
}
