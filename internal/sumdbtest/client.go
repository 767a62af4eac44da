package sumdbtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"

	"golang.org/x/mod/sumdb"
)

// ClientOps is an in-memory golang.org/x/mod/sumdb.ClientOps that reads a
// checksum database over HTTP at a base URL, as the go command does. Tests
// use it to check a server with the real client's verification.
type ClientOps struct {
	base, key string

	mu       sync.Mutex
	config   map[string][]byte
	cache    map[string][]byte
	paths    []string
	security []string
}

// NewClient returns a sumdb.Client for the database at base whose verifier
// key is vkey, and its ops.
func NewClient(base, vkey string) (*sumdb.Client, *ClientOps) {
	ops := &ClientOps{base: base, key: vkey, config: map[string][]byte{}, cache: map[string][]byte{}}
	return sumdb.NewClient(ops), ops
}

// Base returns the database URL.
func (o *ClientOps) Base() string { return o.base }

// ReadRemote implements sumdb.ClientOps.
func (o *ClientOps) ReadRemote(path string) ([]byte, error) {
	o.mu.Lock()
	o.paths = append(o.paths, path)
	o.mu.Unlock()
	resp, err := http.Get(o.base + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}

// ReadConfig implements sumdb.ClientOps; "key" is the verifier key.
func (o *ClientOps) ReadConfig(file string) ([]byte, error) {
	if file == "key" {
		return []byte(o.key), nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.config[file], nil
}

// WriteConfig implements sumdb.ClientOps.
func (o *ClientOps) WriteConfig(file string, old, new []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !bytes.Equal(o.config[file], old) {
		return sumdb.ErrWriteConflict
	}
	o.config[file] = new
	return nil
}

// ReadCache implements sumdb.ClientOps.
func (o *ClientOps) ReadCache(file string) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if data, ok := o.cache[file]; ok {
		return data, nil
	}
	return nil, os.ErrNotExist
}

// WriteCache implements sumdb.ClientOps.
func (o *ClientOps) WriteCache(file string, data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cache[file] = data
}

// Log implements sumdb.ClientOps.
func (o *ClientOps) Log(string) {}

// SecurityError implements sumdb.ClientOps by recording msg.
func (o *ClientOps) SecurityError(msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.security = append(o.security, msg)
}

// SecurityErrors returns the security errors reported so far.
func (o *ClientOps) SecurityErrors() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.security...)
}

// Latest returns the client's stored latest head for the database named name.
func (o *ClientOps) Latest(name string) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.config[name+"/latest"]
}

// Paths returns the paths the client has requested.
func (o *ClientOps) Paths() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.paths...)
}
