// Package backup is the file format of `raftcdc ctl cluster snapshot save`
// and `raftcdc tools restore`: a consistent copy of the state machine, in
// JSON lines so that it can be read with ordinary tools, with a checksum
// that makes a truncated or altered file fail loudly instead of seeding a
// cluster with part of its metadata.
//
//	{"format":"raftcdc-backup","version":1,"cluster_id":…,"applied_index":…,…}
//	{"k":"/changefeed/info/orders","v":{…},"c":12,"m":340}
//	…one line per key, in key order…
//	{"trailer":{"keys":N,"bytes":B,"sha256":"…"}}
//
// The SHA-256 covers every byte before the trailer line. Values are the
// stored JSON records, untouched (sink URIs with their credentials
// included: a backup must restore working changefeeds), so a backup file is
// as secret as the cluster's data dir.
package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
)

const (
	// Format names the file kind in the header.
	Format = "raftcdc-backup"
	// Version is the format version this build writes and reads.
	Version = 1
	// maxLine bounds one line (one metadata record) when reading.
	maxLine = 64 << 20
)

// Header is the first line: where and when the copy was taken.
type Header struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// ClusterID and SchemaVersion are the cluster record's at the time
	// (empty and 0 for a cluster that has none).
	ClusterID     string `json:"cluster_id,omitempty"`
	SchemaVersion int    `json:"schema_version,omitempty"`
	// AppliedIndex is the Raft index the copy reflects: every write
	// acknowledged before the backup started is in it.
	AppliedIndex uint64    `json:"applied_index"`
	Term         uint64    `json:"term,omitempty"`
	NodeID       string    `json:"node_id,omitempty"`
	BuildVersion string    `json:"raftcdc_version,omitempty"`
	Created      time.Time `json:"created"`
}

// Trailer is the last line.
type Trailer struct {
	Keys   int    `json:"keys"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

type entry struct {
	Key       string          `json:"k"`
	Value     json.RawMessage `json:"v"`
	CreateRev uint64          `json:"c"`
	ModRev    uint64          `json:"m"`
}

type trailerLine struct {
	Trailer *Trailer `json:"trailer"`
}

// Write writes a backup: h, then every key each yields (in key order), then
// the trailer, which it returns.
func Write(w io.Writer, h Header, each func(yield func(fsm.KV) error) error) (Trailer, error) {
	h.Format, h.Version = Format, Version
	sum := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, sum)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(h); err != nil {
		return Trailer{}, fmt.Errorf("writing the backup header: %w", err)
	}
	keys := 0
	err := each(func(kv fsm.KV) error {
		keys++
		return enc.Encode(entry{Key: kv.Key, Value: kv.Value, CreateRev: kv.CreateRev, ModRev: kv.ModRev})
	})
	if err != nil {
		return Trailer{}, fmt.Errorf("writing the backup: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return Trailer{}, fmt.Errorf("writing the backup: %w", err)
	}
	t := Trailer{Keys: keys, Bytes: cw.n, SHA256: hex.EncodeToString(sum.Sum(nil))}
	line, _ := json.Marshal(trailerLine{Trailer: &t})
	if _, err := w.Write(append(line, '\n')); err != nil {
		return Trailer{}, fmt.Errorf("writing the backup trailer: %w", err)
	}
	return t, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrCorrupt is wrapped by every failure that says the file is not a
// whole, unaltered backup.
var ErrCorrupt = errors.New("not a complete raftcdc backup")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// Read reads a backup from r, calling fn for every key in order, and
// checks it whole: the header, every line, the key order, the key count,
// the length and the checksum. fn sees the entries as they are read, so a
// caller must treat what it did as provisional until Read returns nil.
// fn may be nil to only check the file.
func Read(r io.Reader, fn func(fsm.KV) error) (Header, Trailer, error) {
	var h Header
	sum := sha256.New()
	br := bufio.NewReaderSize(r, 1<<20)
	var read int64
	line, err := readLine(br, sum, &read)
	if err != nil {
		return h, Trailer{}, corrupt("reading the header: %v", err)
	}
	if err := json.Unmarshal(line, &h); err != nil || h.Format != Format {
		return h, Trailer{}, corrupt("the first line is not a %s header", Format)
	}
	if h.Version != Version {
		return h, Trailer{}, fmt.Errorf("backup format version %d is not known to this build (it reads %d)", h.Version, Version)
	}
	keys := 0
	prev := ""
	for {
		before := read
		line, err := readLine(br, nil, &read)
		if err != nil {
			return h, Trailer{}, corrupt("after %d keys: %v (the file ends without its trailer: truncated?)", keys, err)
		}
		if bytes.HasPrefix(line, []byte(`{"trailer":`)) {
			var tl trailerLine
			if err := json.Unmarshal(line, &tl); err != nil || tl.Trailer == nil {
				return h, Trailer{}, corrupt("malformed trailer")
			}
			t := *tl.Trailer
			if _, err := br.ReadByte(); err != io.EOF {
				return h, t, corrupt("data after the trailer")
			}
			got := hex.EncodeToString(sum.Sum(nil))
			switch {
			case t.Bytes != before:
				return h, t, corrupt("the trailer counts %d bytes, the file has %d before it", t.Bytes, before)
			case t.Keys != keys:
				return h, t, corrupt("the trailer counts %d keys, the file has %d", t.Keys, keys)
			case t.SHA256 != got:
				return h, t, corrupt("checksum mismatch: the trailer says sha256 %s, the content is %s", t.SHA256, got)
			}
			return h, t, nil
		}
		sum.Write(line)
		sum.Write([]byte{'\n'})
		var e entry
		if err := json.Unmarshal(line, &e); err != nil || e.Key == "" || e.Value == nil {
			return h, Trailer{}, corrupt("line %d is not a key", keys+2)
		}
		if e.Key <= prev {
			return h, Trailer{}, corrupt("key %q is out of order (after %q)", e.Key, prev)
		}
		prev = e.Key
		keys++
		if fn != nil {
			if err := fn(fsm.KV{Key: e.Key, Value: []byte(e.Value), CreateRev: e.CreateRev, ModRev: e.ModRev}); err != nil {
				return h, Trailer{}, err
			}
		}
	}
}

// readLine reads one line without its newline, adding it (with the
// newline) to sum when sum is set, and counting the bytes read.
func readLine(br *bufio.Reader, sum hash.Hash, read *int64) ([]byte, error) {
	var line []byte
	for {
		part, err := br.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("a line longer than %d bytes", maxLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		break
	}
	*read += int64(len(line))
	if sum != nil {
		sum.Write(line)
	}
	return line[:len(line)-1], nil
}
