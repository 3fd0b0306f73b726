package kubernetes

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/shipwatch/shipwatch/drivers"
)

// Who may take a field from whom.
//
// Server-side apply records an owner (field manager) for every field. Applying with force
// takes conflicting fields from their owners; without force a conflict is an error. The
// driver forces only where taking is what the user asked for:
//
//   - An object this app applied before is shipwatch's. A field of it that someone else now
//     owns (kubectl edit, kubectl scale, a controller) was taken from shipwatch: that is
//     drift, healed under drift: heal by applying with force, and the plan names who
//     changed which field.
//   - Any other existing object (created by a person, by another tool, or owned in part by
//     a controller such as an HPA owning .spec.replicas) is applied without force: fields
//     nobody else owns, or that already hold the desired value, are simply shared, while a
//     field another manager owns with a different value is a conflict that fails the plan
//     (ErrFieldConflict, an invalid spec) naming the object, the field and its manager;
//     nothing of the app is written. apps[].kubernetes.forceConflicts: true (Options.
//     ForceConflicts, per app) takes such fields instead, and the plan says which.
//   - A new object is created without force, so one that someone creates under its name
//     between plan and apply fails the apply with the same conflict instead of being taken.
//
// The decision is per object, not per field: on an object the app applied before, a field
// that Git only now sets and that another manager already owns is taken as drift too (the
// plan names the manager). Telling it apart would need the field set of every earlier
// apply, which the cluster does not keep once another manager has taken a field.
//
// "Applied before" is read from the cluster, never from memory, so a restarted daemon
// decides the same: the object carries this app's label (the mark prune requires before
// it deletes anything) and either the app's ApplySet inventory lists it or shipwatch has a
// managed-fields entry on it. The inventory alone is not enough: Apply records new members
// before it creates them, so an interrupted first apply can list a name that someone else
// then created. The label alone is not enough either: copying labels is easy. Together
// they also keep healing working when the inventory Secret was deleted.

// ErrFieldConflict is wrapped when a desired object sets a field that another field manager
// owns with a different value on an object this app never applied, and the app does not
// set forceConflicts. It also wraps drivers.ErrInvalidSpec: retrying cannot help until Git,
// the other manager or the app's settings change.
var ErrFieldConflict = errors.New("field owned by another field manager")

// maxConflictsShown bounds the objects a conflict error lists.
const maxConflictsShown = 5

// conflictHint says how to resolve a conflict; it ends every conflict error once.
const conflictHint = "shipwatch did not apply these objects before and does not take fields from other managers; " +
	"change Git to match, have the other manager release the fields, or set apps[].kubernetes.forceConflicts: true"

// appliedBefore says whether live is an object this app applied before (see above).
func appliedBefore(app string, listed bool, live *unstructured.Unstructured) bool {
	if live == nil || live.GetLabels()[LabelApp] != app {
		return false
	}
	if listed {
		return true
	}
	for _, mf := range live.GetManagedFields() {
		if mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// isFieldConflict recognises the API server's answer to an apply without force that hits
// fields of another manager: 409 with FieldManagerConflict causes (a 409 for a stale
// resourceVersion has none).
func isFieldConflict(err error) bool {
	if !apierrors.IsConflict(err) {
		return false
	}
	return len(conflictCauses(err)) > 0
}

// conflictCauses maps each manager named by a conflict error to the fields it owns. The
// field is API; the manager is read from the cause's message (`conflict with "kubectl"
// using v1`), so an unparsable message gives the manager "another manager".
func conflictCauses(err error) map[string][]string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return nil
	}
	out := map[string][]string{}
	for _, c := range status.Status().Details.Causes {
		if c.Type != metav1.CauseTypeFieldManagerConflict {
			continue
		}
		manager := "another manager"
		if rest, ok := strings.CutPrefix(c.Message, "conflict with "); ok {
			if q, err := strconv.QuotedPrefix(rest); err == nil {
				manager, _ = strconv.Unquote(q)
			}
		}
		out[manager] = append(out[manager], c.Field)
	}
	for _, fields := range out {
		slices.Sort(fields)
	}
	return out
}

// conflictError is one desired object with fields another manager owns.
type conflictError struct {
	ref drivers.Ref
	// owners maps each other manager to the fields of it that the apply would take.
	owners map[string][]string
}

func (e *conflictError) describe() string {
	if len(e.owners) == 0 {
		return e.ref.String() + ": fields owned by another manager"
	}
	return e.ref.String() + ": " + summarise(e.owners, "%s owns %s")
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("field conflict: %s (%s)", e.describe(), conflictHint)
}

func (e *conflictError) Is(target error) bool {
	return target == ErrFieldConflict || target == drivers.ErrInvalidSpec
}

// conflicts is every conflictError of one plan, reported together so that one pass shows
// all of them.
type conflicts []*conflictError

func (cs conflicts) Error() string {
	shown := cs[:min(len(cs), maxConflictsShown)]
	parts := make([]string, 0, len(shown))
	for _, c := range shown {
		parts = append(parts, c.describe())
	}
	msg := "field conflicts: " + strings.Join(parts, "; ")
	if extra := len(cs) - len(shown); extra > 0 {
		msg += fmt.Sprintf("; and %d more objects", extra)
	}
	return msg + " (" + conflictHint + ")"
}

func (cs conflicts) Is(target error) bool {
	return target == ErrFieldConflict || target == drivers.ErrInvalidSpec
}

// takeoverReason words an update that forceConflicts makes on an object shipwatch did not
// apply before: which fields it takes from whom.
func takeoverReason(taken map[string][]string) string {
	if len(taken) == 0 {
		return "differs from desired; adopted"
	}
	return "differs from desired; adopted with forceConflicts: " + summarise(taken, "takes %[2]s from %[1]s")
}
