package docker

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/shipwatch/shipwatch/drivers"
	"github.com/shipwatch/shipwatch/manifests"
)

func TestReadBuildLogsStepsAndFails(t *testing.T) {
	var logs bytes.Buffer
	r := &applyRun{log: slog.New(slog.NewTextHandler(&logs, nil))}
	b := &BuildSpec{Image: "shop-api", Context: manifests.BuildContext{Rel: "api", Dockerfile: "Dockerfile"},
		Args: map[string]*string{"TOKEN": ptr("s3cret-arg")}}
	stream := `{"stream":"Step 1/3 : FROM scratch\n"}
{"stream":"\n"}
{"stream":" ---\u003e Running in 1234\n"}
{"stream":"Step 2/3 : COPY app /app\n"}
{"stream":"some output line\n"}
{"errorDetail":{"message":"COPY failed: file not found"},"error":"COPY failed: file not found"}
`
	err := r.readBuild(strings.NewReader(stream), b)
	if !errors.Is(err, ErrBuildFailed) || !errors.Is(err, drivers.ErrInvalidSpec) {
		t.Fatalf("err = %v, want ErrBuildFailed", err)
	}
	if !strings.Contains(err.Error(), "Step 2/3 : COPY app /app: COPY failed") || !strings.Contains(err.Error(), "api/Dockerfile") {
		t.Errorf("error does not name the step and Dockerfile: %v", err)
	}
	out := logs.String()
	if strings.Count(out, "build step") != 2 || strings.Contains(out, "Running in") || strings.Contains(out, "some output") {
		t.Errorf("want one log line per Dockerfile step, got:\n%s", out)
	}
	if strings.Contains(out+err.Error(), "s3cret") {
		t.Error("a build arg value reached the logs or the error")
	}
	if err := r.readBuild(strings.NewReader(`{"stream":"Step 1/1 : FROM scratch\n"}`+"\n"), b); err != nil {
		t.Errorf("successful build: %v", err)
	}
}
