package notify

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrEmptyFile is returned by the file readers when a URL or secret file is empty.
var ErrEmptyFile = errors.New("file is empty")

// URLFromFile returns a Target.URL that reads path at each send, so a rotated URL is
// used without a restart. Its errors name the file, never its content.
func URLFromFile(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read notify URL file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("notify URL file %s: %w", path, ErrEmptyFile)
		}
		return s, nil
	}
}

// SecretFromFile returns a Target.Secret that reads path at each send. A trailing line
// break is not part of the key: `echo key > file` is how such files are usually written.
func SecretFromFile(path string) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read notify secret file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("notify secret file %s: %w", path, ErrEmptyFile)
		}
		return b, nil
	}
}
