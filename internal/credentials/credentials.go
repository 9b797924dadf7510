// Package credentials records, for the local user, the control API token of
// each shoal server by its URL, so the CLI on the same machine needs no
// flags. The file is credentials.json in the user's config folder
// ($XDG_CONFIG_HOME/shoal or ~/.config/shoal), readable by the user only.
package credentials

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

type file struct {
	Servers map[string]string `json:"servers"` // URL -> token
}

// Path is the credentials file of the current user.
func Path() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("user config folder: %w", err)
	}
	return filepath.Join(dir, "shoal", "credentials.json"), nil
}

func normalize(url string) string { return strings.TrimSuffix(url, "/") }

func read(path string) (file, error) {
	f := file{Servers: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	if f.Servers == nil {
		f.Servers = map[string]string{}
	}
	return f, nil
}

// Token returns the token recorded for the server at url, or "".
func Token(url string) (string, error) {
	path, err := Path()
	if err != nil {
		return "", err
	}
	f, err := read(path)
	if err != nil {
		return "", err
	}
	return f.Servers[normalize(url)], nil
}

// Save records token for each of urls.
func Save(token string, urls ...string) error {
	path, err := Path()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := read(path)
	if err != nil {
		return err
	}
	for _, u := range urls {
		f.Servers[normalize(u)] = token
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
