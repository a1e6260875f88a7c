package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/backup"
)

// SnapshotResult says what SaveSnapshot wrote.
type SnapshotResult struct {
	File    string         `json:"file"`
	Header  backup.Header  `json:"header"`
	Trailer backup.Trailer `json:"trailer"`
}

// SaveSnapshot streams a backup of the state machine from the leader into
// file. The stream is checked as it arrives (header, every line, key order,
// length and checksum) and written to a temporary file beside file, which
// is synced and renamed into place only when the whole backup checked out:
// a broken transfer never leaves a file that looks like a backup. An
// existing file is not overwritten. The file is readable by its owner only:
// it holds every changefeed's credentials.
func (c *Client) SaveSnapshot(ctx context.Context, file string) (*SnapshotResult, error) {
	if _, err := os.Lstat(file); err == nil {
		return nil, fmt.Errorf("%s already exists; choose another file or remove it first", file)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("checking %s: %w", file, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".partial-*")
	if err != nil {
		return nil, fmt.Errorf("creating the snapshot file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("creating the snapshot file: %w", err)
	}
	body, err := c.Stream(ctx, http.MethodPost, "/api/v1/cluster/snapshot")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	h, t, err := backup.Read(io.TeeReader(body, tmp), nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("the snapshot stream did not check out, nothing was saved: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("syncing the snapshot file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("closing the snapshot file: %w", err)
	}
	// Link, not rename: it fails rather than replace a file that appeared
	// meanwhile.
	if err := os.Link(tmp.Name(), file); err != nil {
		return nil, fmt.Errorf("saving the snapshot as %s: %w", file, err)
	}
	os.Remove(tmp.Name())
	done = true
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		_ = d.Sync() // make the new name itself durable
		d.Close()
	}
	return &SnapshotResult{File: file, Header: h, Trailer: t}, nil
}

// Metadata reads every metadata key under prefix ("" for all), decoded.
func (c *Client) Metadata(ctx context.Context, prefix string) (*api.Metadata, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	var out api.Metadata
	if err := c.Do(ctx, http.MethodGet, c.read("/api/v1/cluster/metadata", q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
