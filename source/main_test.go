package source

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// As in main: file:// repositories are served in process, not by git-upload-pack.
	ServeFileInProcess()
	os.Exit(m.Run())
}
