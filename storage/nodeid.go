package storage

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const (
	nodeIDFile   = "node-id"
	maxNodeIDLen = 64
)

// ValidateNodeID checks that id is 1..64 characters of letters and digits
// with single dashes between them. The ID ends up in Raft server IDs, gossip
// node names, metric labels and file names, so it is kept to a set that is
// safe in all of them.
func ValidateNodeID(id string) error {
	if id == "" {
		return errors.New("invalid node ID: empty")
	}
	if len(id) > maxNodeIDLen {
		return fmt.Errorf("invalid node ID %q: longer than %d characters", id, maxNodeIDLen)
	}
	prevDash := true // a leading dash is as wrong as a double one
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			prevDash = false
		case r == '-':
			if prevDash {
				return fmt.Errorf("invalid node ID %q: dashes must sit singly between letters or digits", id)
			}
			prevDash = true
		default:
			return fmt.Errorf("invalid node ID %q: only letters, digits and dashes are allowed", id)
		}
	}
	if prevDash {
		return fmt.Errorf("invalid node ID %q: must not end with a dash", id)
	}
	return nil
}

// NodeID returns the node's stable ID, kept in dataDir/node-id.
//
//   - file present, flag empty: the file's ID;
//   - file absent, flag set: the flag's ID, persisted;
//   - both present and different: an error, because the data dir (and its
//     Raft state) belongs to another node;
//   - neither: a new random ID, persisted.
func NodeID(dataDir, flagValue string) (string, error) {
	if dataDir == "" {
		return "", errors.New("resolve node ID: empty data dir")
	}
	if flagValue != "" {
		if err := ValidateNodeID(flagValue); err != nil {
			return "", fmt.Errorf("resolve node ID from flag: %w", err)
		}
	}
	path := filepath.Join(dataDir, nodeIDFile)
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		stored := strings.TrimSpace(string(raw))
		if err := ValidateNodeID(stored); err != nil {
			return "", fmt.Errorf("resolve node ID: %s is corrupt: %w", path, err)
		}
		if flagValue != "" && flagValue != stored {
			return "", fmt.Errorf("data dir %s belongs to node %s, not %s", dataDir, stored, flagValue)
		}
		return stored, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return "", fmt.Errorf("resolve node ID: read %s: %w", path, err)
	}

	id := flagValue
	if id == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("generate node ID: %w", err)
		}
		id = "node-" + hex.EncodeToString(b[:])
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("persist node ID: create %s: %w", dataDir, err)
	}
	if err := writeFileAtomic(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("persist node ID %s: %w", id, err)
	}
	return id, nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it into place, so a crash leaves either no file or a complete one.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	tmpName := tmp.Name()
	cleanup := func() { _ = os.Remove(tmpName) }
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		cleanup()
		return fmt.Errorf("write %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		cleanup()
		return fmt.Errorf("sync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		cleanup()
		return fmt.Errorf("close %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		cleanup()
		return fmt.Errorf("rename %s to %s: %w", tmpName, path, err)
	}
	// Sync the directory so the rename itself survives a power loss.
	return syncDir(dir)
}

// ReadNodeID returns the ID kept in dataDir/node-id, without creating one:
// for tools that work on an existing node's data dir.
func ReadNodeID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, nodeIDFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s has no node ID (%s is missing): is it a raftcdc data dir?", dataDir, path)
		}
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	id := strings.TrimSpace(string(raw))
	if err := ValidateNodeID(id); err != nil {
		return "", fmt.Errorf("%s is corrupt: %w", path, err)
	}
	return id, nil
}
