package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// CommandVersion is the version this build writes. Every older version stays
// decodable so that a node running this build can replay a log written by an
// older one.
const CommandVersion = 2

// Kind says what a command does beyond its key operations.
type Kind string

const (
	// KindTxn is a batch of conditions and operations applied atomically.
	KindTxn Kind = "txn"
	// KindClaimOwner makes the proposer the owner; the entry's Raft index
	// becomes the owner epoch.
	KindClaimOwner Kind = "claim_owner"
	// KindRegisterCapture writes the proposer's capture record with a new
	// incarnation; only a capture may write its own record.
	KindRegisterCapture Kind = "register_capture"
)

// OpType is a key operation.
type OpType string

const (
	OpPut          OpType = "put"
	OpDelete       OpType = "delete"
	OpDeletePrefix OpType = "delete_prefix"
)

// Op changes one key (or, for OpDeletePrefix, every key under a prefix).
type Op struct {
	Type  OpType          `json:"type"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value,omitempty"`
}

// CondType is a precondition on one key.
type CondType string

const (
	CondExists CondType = "exists"
	CondAbsent CondType = "absent"
	// CondModRev holds when the key's last change was at exactly ModRev; a
	// ModRev of 0 means the key must be absent, like etcd's mod_revision 0.
	CondModRev CondType = "mod_rev"
)

// Cond is a precondition; a command applies only if all of them hold.
type Cond struct {
	Type   CondType `json:"type"`
	Key    string   `json:"key"`
	ModRev uint64   `json:"mod_rev,omitempty"`
}

// CaptureFence identifies the process that proposed a processor command.
type CaptureFence struct {
	ID          string `json:"id"`
	Incarnation uint64 `json:"incarnation"`
}

// Command is one Raft log entry's payload.
type Command struct {
	Version int  `json:"v"`
	Kind    Kind `json:"kind"`
	// OwnerEpoch, when set, makes this an owner command: it applies only while
	// the epoch is the current one.
	OwnerEpoch uint64 `json:"owner_epoch,omitempty"`
	// Capture, when set, makes this a processor command: it applies only while
	// that incarnation of the capture is registered.
	Capture *CaptureFence `json:"capture,omitempty"`
	Conds   []Cond        `json:"conds,omitempty"`
	Ops     []Op          `json:"ops,omitempty"`
	// NodeID and UnixMilli go with KindClaimOwner; the time comes from the
	// proposer so that every replica stores the same value.
	NodeID    string `json:"node_id,omitempty"`
	UnixMilli int64  `json:"unix_ms,omitempty"`
}

// Encode serialises a command at the current version.
func Encode(c Command) ([]byte, error) {
	c.Version = CommandVersion
	if c.Kind == "" {
		c.Kind = KindTxn
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	return b, nil
}

// commandV1 is the first wire format: an unfenced batch of puts and deletes
// with short field names. Logs written by version-1 nodes still replay.
type commandV1 struct {
	Version int `json:"v"`
	Ops     []struct {
		Op    string          `json:"op"` // "put" or "del"
		Key   string          `json:"k"`
		Value json.RawMessage `json:"val,omitempty"`
	} `json:"ops"`
}

// currentPrefix is how Encode's output begins (Version is the struct's
// first field); a test holds it to CommandVersion.
const currentPrefix = `{"v":2,`

// Decode parses a command of any version this build knows.
func Decode(b []byte) (Command, error) {
	// A command of this build's own version is decoded in one pass: the
	// probe below reads the whole document just to find "v", and a
	// processor's position in it is a megabyte at 30,000 tables (issue 16).
	if bytes.HasPrefix(b, []byte(currentPrefix)) {
		var c Command
		if err := json.Unmarshal(b, &c); err != nil {
			return Command{}, fmt.Errorf("decoding version %d command: %w", CommandVersion, err)
		}
		if c.Version == CommandVersion {
			return c, nil
		}
		// A later "v" overrode the first: decide by the probe below, as
		// before.
	}
	var probe struct {
		Version int `json:"v"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return Command{}, fmt.Errorf("decoding command: %w", err)
	}
	switch probe.Version {
	case 1:
		var old commandV1
		if err := json.Unmarshal(b, &old); err != nil {
			return Command{}, fmt.Errorf("decoding version 1 command: %w", err)
		}
		c := Command{Version: 1, Kind: KindTxn}
		for _, o := range old.Ops {
			switch o.Op {
			case "put":
				c.Ops = append(c.Ops, Op{Type: OpPut, Key: o.Key, Value: o.Value})
			case "del":
				c.Ops = append(c.Ops, Op{Type: OpDelete, Key: o.Key})
			default:
				return Command{}, fmt.Errorf("decoding version 1 command: unknown op %q", o.Op)
			}
		}
		return c, nil
	case 2:
		var c Command
		if err := json.Unmarshal(b, &c); err != nil {
			return Command{}, fmt.Errorf("decoding version 2 command: %w", err)
		}
		return c, nil
	default:
		return Command{}, &VersionError{Version: probe.Version}
	}
}

// VersionError is a command in a format this build does not know: written
// by a newer build. It cannot be applied (its meaning is unknown) and must
// not be refused either (the replicas that know it apply it, and a refusal
// here would make this replica's state differ from theirs).
type VersionError struct {
	Version int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("command format version %d is not known to this build (newest known: %d); upgrade this node", e.Version, CommandVersion)
}
