package main

import (
	"context"
	"log"
	"log/slog"
	"regexp"
	"strings"

	"github.com/sirupsen/logrus"
)

// checkoutPath matches a path inside the Git cache's checkouts, which library messages
// quote: they read as "<repo>@<revision>:<file>", the repository file a user can open.
var checkoutPath = regexp.MustCompile(`\S*/git/checkouts/([^/\s]+)/([0-9a-f]{12})[0-9a-f]{28}/`)

func repoPaths(s string) string {
	return checkoutPath.ReplaceAllString(strings.TrimSpace(s), "$1@$2:")
}

// routeLibraryLogs sends what compose-go (logrus) and kustomize (the standard log package)
// print into the process's logger, in its format and at its level, with paths named as
// repository files. Both loggers are process-wide, so this runs where the logger is made.
func routeLibraryLogs(l *slog.Logger) {
	logrus.SetOutput(discard{})
	logrus.SetLevel(logrus.DebugLevel) // the slog handler decides what is shown
	logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	logrus.AddHook(logrusHook{l: l.With("resource", "compose")})
	log.SetFlags(0)
	log.SetOutput(stdlogWriter{l: l.With("resource", "kustomize")})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type logrusHook struct{ l *slog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	level := slog.LevelInfo
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	case e.Level >= logrus.DebugLevel:
		level = slog.LevelDebug
	}
	h.l.Log(context.Background(), level, "library message", "err", repoPaths(e.Message))
	return nil
}

type stdlogWriter struct{ l *slog.Logger }

func (w stdlogWriter) Write(p []byte) (int, error) {
	w.l.Warn("library message", "err", repoPaths(string(p)))
	return len(p), nil
}
