package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/backup"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/meta"
)

// Day-2 operations on the whole state machine: a backup stream and a
// decoded dump for people.

// BackupContentType is the media type of a backup stream.
const BackupContentType = "application/vnd.raftcdc.backup+jsonl"

// snapshot streams a consistent backup of the state machine (format:
// package backup). It runs on the leader (followers forward), after a
// read-index, so the copy holds every write acknowledged before the request.
// It is a POST because a backup holds every credential of every changefeed:
// with an API token, writes always need it.
func (h *Handler) snapshot(w http.ResponseWriter, r *http.Request) error {
	if err := h.store.ReadIndex(r.Context()); err != nil {
		return err
	}
	st := h.store.Status()
	started := false
	err := h.store.View(func(rd fsm.Reader, applied uint64) error {
		hdr := backup.Header{AppliedIndex: applied, Term: st.Term, NodeID: st.NodeID, BuildVersion: st.Version, Created: time.Now().UTC()}
		if c, _, ok, err := meta.GetCluster(rd); err == nil && ok {
			hdr.ClusterID, hdr.SchemaVersion = c.ID, c.SchemaVersion
		}
		w.Header().Set("Content-Type", BackupContentType)
		w.WriteHeader(http.StatusOK)
		started = true
		_, err := backup.Write(w, hdr, func(yield func(fsm.KV) error) error {
			var yerr error
			rd.Range("/", func(kv fsm.KV) bool {
				yerr = yield(kv)
				return yerr == nil
			})
			return yerr
		})
		return err
	})
	if err != nil && started {
		// The status line is out: cut the stream so the client sees a
		// file without its trailer rather than a complete-looking one.
		panic(http.ErrAbortHandler)
	}
	return err
}

// MetadataKey is one key of the state machine as `cluster show-metadata`
// prints it.
type MetadataKey struct {
	Key       string `json:"key"`
	Kind      string `json:"kind"`
	CreateRev uint64 `json:"create_rev"`
	ModRev    uint64 `json:"mod_rev"`
	// Value is the decoded record, with passwords and secret URI parameters
	// hidden; for a key that does not decode, the stored value as it is.
	Value json.RawMessage `json:"value"`
	// Error says why the key does not decode (see meta/DESIGN.md).
	Error string `json:"error,omitempty"`
}

// Metadata is the answer of GET /api/v1/cluster/metadata.
type Metadata struct {
	AppliedIndex uint64        `json:"applied_index"`
	ClusterID    string        `json:"cluster_id,omitempty"`
	Keys         []MetadataKey `json:"keys"`
}

// metadata dumps every key under ?prefix= (default: all), decoded by meta,
// for debugging — TiCDC's `cli unsafe show-metadata`.
func (h *Handler) metadata(w http.ResponseWriter, r *http.Request) error {
	prefix := r.URL.Query().Get("prefix")
	if prefix == "" {
		prefix = "/"
	}
	if !strings.HasPrefix(prefix, "/") || len(prefix) > 512 {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "prefix %s must start with / and be at most 512 characters", quoteClip(prefix))
	}
	if err := h.consistentRead(r); err != nil {
		return err
	}
	var out Metadata
	err := h.store.View(func(rd fsm.Reader, applied uint64) error {
		out.AppliedIndex = applied
		if c, _, ok, err := meta.GetCluster(rd); err == nil && ok {
			out.ClusterID = c.ID
		}
		// Every URI the state holds, so that its secrets are hidden
		// wherever they appear (errors quote URIs too).
		uris := secretURIs(rd)
		out.Keys = []MetadataKey{}
		rd.Range(prefix, func(kv fsm.KV) bool {
			mk := MetadataKey{Key: kv.Key, CreateRev: kv.CreateRev, ModRev: kv.ModRev}
			if k, err := meta.ParseKey(kv.Key); err == nil {
				mk.Kind = string(k.Kind)
			}
			raw := kv.Value
			if d, err := meta.Decode(kv.Key, kv.Value); err != nil {
				mk.Error = err.Error()
			} else if b, err := json.Marshal(d); err == nil {
				raw = b
			}
			red := redact.Text(string(raw), uris...)
			if !json.Valid([]byte(red)) {
				red, _ = marshalString(red)
			}
			mk.Value = json.RawMessage(red)
			mk.Error = redact.Text(mk.Error, uris...)
			out.Keys = append(out.Keys, mk)
			return true
		})
		return nil
	})
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, out)
}

func marshalString(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

// secretURIs lists the source and sink URIs of every changefeed and GC
// record, decodable or not.
func secretURIs(rd fsm.Reader) []string {
	var uris []string
	add := func(kv fsm.KV, fields ...string) {
		var m map[string]any
		if json.Unmarshal(kv.Value, &m) != nil {
			return
		}
		for _, f := range fields {
			if s, ok := m[f].(string); ok && s != "" {
				uris = append(uris, s)
			}
		}
	}
	rd.Range(meta.PrefixChangefeedInfo, func(kv fsm.KV) bool { add(kv, "source_uri", "sink_uri"); return true })
	rd.Range(meta.PrefixGC, func(kv fsm.KV) bool { add(kv, "source_uri"); return true })
	return uris
}
