package docker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// secretKeyFile holds the key of secret files' addresses, in the files directory. Its name
// starts with a dot, so no content-addressed copy (a hex name) can take it.
const secretKeyFile = ".secret-address-key"

// secretKeySize is the key length in bytes: that of the HMAC-SHA256 output.
const secretKeySize = 32

// ErrBadSecretKey marks a secret address key file that is not a key: it was changed by
// hand or truncated. Remove it; services with secrets are then recreated once.
var ErrBadSecretKey = errors.New("secret address key file is damaged")

// secretKey returns the driver's key for secret file addresses, creating it on first use.
// It lives beside the copies it addresses: losing one means losing the other, and a new key
// only costs one recreate of the services that mount secrets.
func (d *Driver) secretKey() ([]byte, error) {
	d.keyMu.Lock()
	defer d.keyMu.Unlock()
	if d.key != nil {
		return d.key, nil
	}
	path := filepath.Join(d.filesDir, secretKeyFile)
	key, err := readSecretKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createSecretKey(path)
	}
	if err != nil {
		return nil, err
	}
	d.key = key
	return key, nil
}

func readSecretKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret address key: %w", err)
	}
	if len(key) != secretKeySize {
		return nil, fmt.Errorf("%s: %w", path, ErrBadSecretKey)
	}
	return key, nil
}

// createSecretKey writes a new random key without replacing one another process wrote
// first: the file is created exclusively, and on a lost race the winner's key is read.
func createSecretKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create files directory: %w", err)
	}
	key := make([]byte, secretKeySize)
	_, _ = rand.Read(key) // never fails: it panics if the OS has no randomness
	tmp, err := os.CreateTemp(filepath.Dir(path), secretKeyFile+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create secret address key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write secret address key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write secret address key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write secret address key: %w", err)
	}
	// A hard link fails if the name exists, where a rename would replace it.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readSecretKey(path)
		}
		return nil, fmt.Errorf("create secret address key: %w", err)
	}
	return key, nil
}
