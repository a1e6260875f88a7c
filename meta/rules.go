package meta

import (
	"encoding/json"
	"time"

	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/model"
)

// Rules are the metadata schema's rules as the state machine enforces them
// (fsm.Rules). The zero value is ready to use.
//
//   - Fencing: a command with an owner epoch applies only while that epoch is
//     the one in /owner; a command with a capture fence only while
//     /capture/<id> holds that incarnation.
//   - Key ownership: /task/status/, /changefeed/status/ and /gc/ are written
//     by the owner; /task/position/<cf>/<c> and /task/workload/<cf>/<c> by
//     capture c's live incarnation (the owner may delete them); /capture/<id>
//     is written only by register_capture of that capture and removed only by
//     the owner; /owner changes only by claim_owner. So each key has one kind
//     of writer, and a bug in one component cannot forge another's state.
//   - Invariants: after a command that touches task statuses, no table of a
//     touched changefeed is assigned to two captures.
type Rules struct{}

var _ fsm.Rules = Rules{}

// Admit implements fsm.Rules.
func (Rules) Admit(r fsm.Reader, cmd fsm.Command, index uint64) ([]fsm.Op, *fsm.Error) {
	switch cmd.Kind {
	case fsm.KindClaimOwner:
		return claimOwner(cmd, index)
	case fsm.KindRegisterCapture:
		return registerCapture(cmd)
	}
	if err := checkFences(r, cmd); err != nil {
		return nil, err
	}
	for _, op := range cmd.Ops {
		if err := checkAccess(r, cmd, op); err != nil {
			return nil, err
		}
		if err := checkPositionEpoch(r, op); err != nil {
			return nil, err
		}
	}
	return cmd.Ops, nil
}

// CodeStaleFeedEpoch refuses a position written by a processor of an
// earlier run (epoch) of its changefeed.
const CodeStaleFeedEpoch fsm.Code = "stale_changefeed_epoch"

// checkPositionEpoch refuses a position whose epoch is not its
// changefeed's current one. A processor reports every flush interval; a
// report built just before a pause can commit after the resume that
// re-dispatched the table, and would raise the table's progress past the
// replay a resume with an overwritten checkpoint asked for, or fail the new
// run with the old run's error.
func checkPositionEpoch(r fsm.Reader, op fsm.Op) *fsm.Error {
	if op.Type != fsm.OpPut {
		return nil
	}
	k, err := ParseKey(op.Key)
	if err != nil || k.Kind != KindTaskPosition {
		return nil
	}
	v, err := Decode(op.Key, op.Value)
	if err != nil {
		return nil // judged when read, like every value (see DESIGN.md): skipped as corrupt
	}
	info, _, ok, err := GetInfo(r, k.Changefeed)
	switch {
	case err != nil:
		return fsm.Errorf(CodeStaleFeedEpoch, op.Key, "changefeed %s is skipped: its info does not decode", k.Changefeed)
	case !ok:
		return fsm.Errorf(CodeStaleFeedEpoch, op.Key, "changefeed %s does not exist", k.Changefeed)
	}
	if got := v.(*model.TaskPosition).Epoch; got != info.Epoch {
		return fsm.Errorf(CodeStaleFeedEpoch, op.Key, "position of changefeed epoch %d; the changefeed is at epoch %d", got, info.Epoch)
	}
	return nil
}

func checkFences(r fsm.Reader, cmd fsm.Command) *fsm.Error {
	if cmd.OwnerEpoch != 0 {
		// A corrupt owner record fences every owner: the next claim repairs it.
		o, _ := GetOwner(r)
		if o.Epoch != cmd.OwnerEpoch {
			return fsm.Errorf(fsm.CodeStaleEpoch, KeyOwner, "owner epoch %d is not the current epoch %d", cmd.OwnerEpoch, o.Epoch)
		}
	}
	if c := cmd.Capture; c != nil {
		info, _, ok, err := GetCapture(r, c.ID)
		switch {
		case err != nil:
			return fsm.Errorf(fsm.CodeFenced, CaptureKey(c.ID), "capture %s (incarnation %d): its record does not decode", c.ID, c.Incarnation)
		case !ok:
			return fsm.Errorf(fsm.CodeFenced, CaptureKey(c.ID), "capture %s (incarnation %d) is not registered", c.ID, c.Incarnation)
		case info.Incarnation != c.Incarnation:
			return fsm.Errorf(fsm.CodeFenced, CaptureKey(c.ID), "capture %s incarnation %d was replaced by incarnation %d", c.ID, c.Incarnation, info.Incarnation)
		}
	}
	return nil
}

// checkAccess enforces who may write which part of the key space, so that
// a processor can never rewrite an assignment and an API write can never
// forge progress.
func checkAccess(r fsm.Reader, cmd fsm.Command, op fsm.Op) *fsm.Error {
	owner := cmd.OwnerEpoch != 0
	if op.Type == fsm.OpDeletePrefix {
		return checkPrefixDelete(owner, op.Key)
	}
	k, err := ParseKey(op.Key)
	if err != nil {
		return fsm.Errorf(fsm.CodeForbidden, op.Key, "%v", err)
	}
	switch k.Kind {
	case KindOwner:
		return fsm.Errorf(fsm.CodeForbidden, op.Key, "the owner record changes only by claim_owner")
	case KindCluster:
		// Written by the leader's node (never by the owner or a capture),
		// compare-and-set; never deleted.
		if owner || cmd.Capture != nil || op.Type != fsm.OpPut {
			return fsm.Errorf(fsm.CodeForbidden, op.Key, "the cluster record is only put, by the leader node")
		}
	case KindTaskStatus, KindChangefeedStatus, KindGC:
		if !owner {
			return fsm.Errorf(fsm.CodeForbidden, op.Key, "only the owner writes this key")
		}
	case KindChangefeedTables:
		if !owner {
			return fsm.Errorf(fsm.CodeForbidden, op.Key, "only the owner writes this key")
		}
		// A replica of a build before schema 3 refuses this key as outside
		// its schema; every replica must judge the put alike.
		if v := ClusterSchemaVersion(r); v < TablesSchemaVersion {
			return fsm.Errorf(fsm.CodeForbidden, op.Key, "the cluster runs at metadata schema %d; table sets have their own key from schema %d", v, TablesSchemaVersion)
		}
	case KindTaskPosition, KindTaskWorkload:
		if owner && op.Type != fsm.OpPut {
			return nil // the owner cleans up after captures that are gone
		}
		if cmd.Capture == nil || cmd.Capture.ID != k.Capture {
			return fsm.Errorf(fsm.CodeForbidden, op.Key, "only capture %s writes its own progress", k.Capture)
		}
	case KindCapture:
		if !owner || op.Type == fsm.OpPut {
			return fsm.Errorf(fsm.CodeForbidden, op.Key, "captures register themselves; only the owner removes them")
		}
	case KindChangefeedInfo, KindUser, KindDrain:
		// Operator requests: written through the API, consumed by the owner.
	}
	return nil
}

// checkPrefixDelete allows a prefix delete only within one subtree a single
// kind of writer owns: the owner clearing a changefeed's tasks, anyone
// clearing user keys.
func checkPrefixDelete(owner bool, prefix string) *fsm.Error {
	for _, p := range []string{PrefixTaskStatus, PrefixTaskPosition, PrefixTaskWorkload} {
		if rest, ok := cutPrefix(prefix, p); ok {
			if !owner {
				return fsm.Errorf(fsm.CodeForbidden, prefix, "only the owner deletes task keys by prefix")
			}
			if rest == "" {
				return fsm.Errorf(fsm.CodeInvalid, prefix, "refusing to delete the tasks of every changefeed at once")
			}
			return nil
		}
	}
	if rest, ok := cutPrefix(prefix, PrefixUser); ok && rest != "" {
		return nil
	}
	return fsm.Errorf(fsm.CodeForbidden, prefix, "prefix deletes are allowed only under a changefeed's task keys or under %s", PrefixUser)
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || s[:len(prefix)] != prefix {
		return "", false
	}
	return s[len(prefix):], true
}

func claimOwner(cmd fsm.Command, index uint64) ([]fsm.Op, *fsm.Error) {
	if cmd.NodeID == "" {
		return nil, fsm.Errorf(fsm.CodeInvalid, KeyOwner, "claim_owner needs a node_id")
	}
	if len(cmd.Ops) > 0 || cmd.OwnerEpoch != 0 || cmd.Capture != nil {
		return nil, fsm.Errorf(fsm.CodeInvalid, KeyOwner, "claim_owner carries only node_id and unix_ms")
	}
	// The entry's Raft index is the epoch: unique, growing, and the same on
	// every replica.
	info := model.OwnerInfo{Epoch: index, NodeID: cmd.NodeID, Since: time.UnixMilli(cmd.UnixMilli).UTC()}
	v, _ := json.Marshal(info)
	return []fsm.Op{{Type: fsm.OpPut, Key: KeyOwner, Value: v}}, nil
}

func registerCapture(cmd fsm.Command) ([]fsm.Op, *fsm.Error) {
	if len(cmd.Ops) != 1 || cmd.Ops[0].Type != fsm.OpPut {
		return nil, fsm.Errorf(fsm.CodeInvalid, "", "register_capture carries exactly one put of the capture record")
	}
	op := cmd.Ops[0]
	k, err := ParseKey(op.Key)
	if err != nil || k.Kind != KindCapture {
		return nil, fsm.Errorf(fsm.CodeInvalid, op.Key, "register_capture writes only a /capture/<id> key")
	}
	d, derr := Decode(op.Key, op.Value)
	if derr != nil {
		return nil, fsm.Errorf(fsm.CodeInvalid, op.Key, "capture record must be stored under its own ID: %v", derr)
	}
	if d.(*model.CaptureInfo).Incarnation == 0 {
		return nil, fsm.Errorf(fsm.CodeInvalid, op.Key, "capture record needs a non-zero incarnation")
	}
	return cmd.Ops, nil
}

// Check implements fsm.Rules: the one-capture-per-table invariant over the
// changefeeds whose task statuses changed.
func (Rules) Check(r fsm.Reader, changed []string) *fsm.Error {
	feeds := map[model.ChangefeedID]bool{}
	for _, key := range changed {
		if k, err := ParseKey(key); err == nil && k.Kind == KindTaskStatus {
			feeds[k.Changefeed] = true
		}
	}
	for cf := range feeds {
		holder := map[model.TableID]model.CaptureID{}
		var refusal *fsm.Error
		r.Range(TaskStatusPrefix(cf), func(kv fsm.KV) bool {
			k, err := ParseKey(kv.Key)
			if err != nil {
				return true // a malformed key holds no tables anybody schedules
			}
			d, err := Decode(kv.Key, kv.Value)
			if err != nil {
				// Skipped, as by every reader: nobody runs its tables. (The
				// FSM does not refuse values that fail to decode: whether a
				// value decodes depends on the build, and replicas of two
				// builds during an upgrade must never disagree on a command.)
				return true
			}
			for table := range d.(*model.TaskStatus).Tables {
				if other, dup := holder[table]; dup {
					refusal = fsm.Errorf(fsm.CodeTableConflict, kv.Key, "table %d of changefeed %s would run on both %s and %s", table, cf, other, k.Capture)
					return false
				}
				holder[table] = k.Capture
			}
			return true
		})
		if refusal != nil {
			return refusal
		}
	}
	return nil
}
