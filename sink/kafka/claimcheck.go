package kafka

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/raftcdc/raftcdc/model"
)

// claimStore keeps the full value of a row too large for a message; the
// message then carries the key and where the value is.
type claimStore interface {
	Put(ctx context.Context, row *model.RowChange, value []byte) (location string, err error)
}

// fileClaimStore writes each value as one file under a directory, made
// visible atomically (temp file, fsync, rename). The name is derived from
// the table, commit ts and a digest of the row change (rowDigest), so a
// replayed row rewrites the same file instead of leaving a second copy.
type fileClaimStore struct{ dir string }

// rowDigest identifies a row change by its op and images, not by its
// encoded message: canal-json, debezium and simple messages carry the
// encoding's wall clock, so a digest of the value named a replayed row's
// file differently each time and left a 10 MiB+ copy per replay. Rows of
// one table and commit ts differ in their images (their keys, or for a
// keyless table their contents), so the name stays unique where it must.
func rowDigest(row *model.RowChange) []byte {
	h := sha256.New()
	row.HashContent(h)
	return h.Sum(nil)
}

func newClaimStore(uri string) (claimStore, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" {
		return nil, fmt.Errorf("claim-check-storage-uri: only file:///dir is supported")
	}
	dir := filepath.Clean(u.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("claim-check storage: %w", err)
	}
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return nil, fmt.Errorf("claim-check storage %s is not writable: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return &fileClaimStore{dir: dir}, nil
}

func (s *fileClaimStore) Put(ctx context.Context, row *model.RowChange, value []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	sum := rowDigest(row)
	t := row.Table()
	sub := filepath.Join(s.dir, sanitizeTopic(t.Schema)+"."+sanitizeTopic(t.Table))
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return "", fmt.Errorf("claim-check storage: %w", err)
	}
	name := filepath.Join(sub, fmt.Sprintf("%020d-%s.value", row.CommitTs, hex.EncodeToString(sum[:12])))
	tmp, err := os.CreateTemp(sub, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("claim-check storage: %w", err)
	}
	_, werr := tmp.Write(value)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), name)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("claim-check storage: writing %s: %w", name, werr)
	}
	return (&url.URL{Scheme: "file", Path: name}).String(), nil
}
