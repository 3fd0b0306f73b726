package docker

import (
	"strings"
	"testing"
)

const liveDoc = `{
  "environment": {"API_KEY": "live-key-123", "DEBUG": "0", "REMOVED": "gone-value", "UNSET": null},
  "image": "shop/api:1.0",
  "labels": {"team": "blue"}
}`

const desiredDoc = `{
  "environment": {"API_KEY": "new-key-456", "DEBUG": "0", "ADDED": "fresh-value", "UNSET": null},
  "image": "shop/api:1.1",
  "labels": {"team": "green"}
}`

func TestMaskedDiffHidesValuesAndNamesChangedKey(t *testing.T) {
	out := MaskedDiff("api", []byte(liveDoc), []byte(desiredDoc))
	for _, secret := range []string{"live-key-123", "new-key-456", "gone-value", "fresh-value"} {
		if strings.Contains(out, secret) {
			t.Errorf("diff leaks %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"--- live/api\n", "+++ desired/api\n",
		`-    "API_KEY": "***",`, `+    "API_KEY": "*** (changed)",`,
		`+    "ADDED": "***",`, `-    "REMOVED": "***",`,
		`-  "image": "shop/api:1.0",`, `+  "image": "shop/api:1.1",`,
		`+    "team": "green"`, // labels are not secret
	} {
		if !strings.Contains(out, want+"\n") && !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"DEBUG": "*** (changed)"`) {
		t.Errorf("unchanged DEBUG marked changed:\n%s", out)
	}
}

func TestMaskedDiffEqualIsEmpty(t *testing.T) {
	if out := MaskedDiff("api", []byte(liveDoc), []byte(liveDoc)); out != "" {
		t.Fatalf("diff of equal documents:\n%s", out)
	}
}

func TestMaskedDiffUnreadableLiveIsNotShown(t *testing.T) {
	out := MaskedDiff("api", []byte(`PASSWORD=hunter2 not json`), []byte(desiredDoc))
	if strings.Contains(out, "hunter2") || !strings.Contains(out, unreadable) {
		t.Fatalf("unreadable live document handled wrong:\n%s", out)
	}
}

func TestChangedFields(t *testing.T) {
	got := changedFields([]byte(liveDoc), []byte(desiredDoc))
	if strings.Join(got, ",") != "environment,image,labels" {
		t.Fatalf("changed fields = %v", got)
	}
}
