package fsm

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/model"
	bolt "go.etcd.io/bbolt"
)

// txn applies one command inside one bbolt transaction.
type txn struct {
	tx     *bolt.Tx
	kv     *bolt.Bucket
	index  uint64
	events []Event
	// touchedFeeds are changefeeds whose task status changed; the
	// one-capture-per-table rule is checked over them at the end.
	touchedFeeds map[string]struct{}
}

func (t *txn) get(key string) (KV, bool) {
	raw := t.kv.Get([]byte(key))
	if raw == nil {
		return KV{}, false
	}
	return decodeValue([]byte(key), raw), true
}

func (t *txn) apply(cmd Command) *Error {
	switch cmd.Kind {
	case KindTxn, "":
	case KindClaimOwner:
		return t.claimOwner(cmd)
	case KindRegisterCapture:
		return t.registerCapture(cmd)
	default:
		return newErr(CodeInvalid, "", "unknown command kind %q", cmd.Kind)
	}
	if err := t.checkFences(cmd); err != nil {
		return err
	}
	for _, c := range cmd.Conds {
		if err := t.checkCond(c); err != nil {
			return err
		}
	}
	for _, op := range cmd.Ops {
		if err := t.checkAccess(cmd, op); err != nil {
			return err
		}
		if err := t.applyOp(op); err != nil {
			return err
		}
	}
	return t.checkTableOwnership()
}

func (t *txn) checkFences(cmd Command) *Error {
	if cmd.OwnerEpoch != 0 {
		var o model.OwnerInfo
		if kv, ok := t.get(model.KeyOwner); ok {
			_ = json.Unmarshal(kv.Value, &o)
		}
		if o.Epoch != cmd.OwnerEpoch {
			return newErr(CodeStaleEpoch, model.KeyOwner, "owner epoch %d is not the current epoch %d", cmd.OwnerEpoch, o.Epoch)
		}
	}
	if cmd.Capture != nil {
		kv, ok := t.get(model.CaptureKey(cmd.Capture.ID))
		if !ok {
			return newErr(CodeFenced, model.CaptureKey(cmd.Capture.ID), "capture %s (incarnation %d) is not registered", cmd.Capture.ID, cmd.Capture.Incarnation)
		}
		var info model.CaptureInfo
		if err := json.Unmarshal(kv.Value, &info); err != nil || info.Incarnation != cmd.Capture.Incarnation {
			return newErr(CodeFenced, kv.Key, "capture %s incarnation %d was replaced by incarnation %d", cmd.Capture.ID, cmd.Capture.Incarnation, info.Incarnation)
		}
	}
	return nil
}

func (t *txn) checkCond(c Cond) *Error {
	kv, ok := t.get(c.Key)
	switch c.Type {
	case CondExists:
		if !ok {
			return newErr(CodePreconditionFailed, c.Key, "key does not exist")
		}
	case CondAbsent:
		if ok {
			return newErr(CodePreconditionFailed, c.Key, "key exists (changed at revision %d)", kv.ModRev)
		}
	case CondModRev:
		if kv.ModRev != c.ModRev {
			return newErr(CodePreconditionFailed, c.Key, "key is at revision %d, not %d", kv.ModRev, c.ModRev)
		}
	default:
		return newErr(CodeInvalid, c.Key, "unknown condition %q", c.Type)
	}
	return nil
}

// checkAccess enforces who may write which part of the key space, so that a
// processor can never rewrite an assignment and an API write can never forge
// progress: owner state needs the current owner epoch, processor state needs
// the writing capture's own live incarnation.
func (t *txn) checkAccess(cmd Command, op Op) *Error {
	key := op.Key
	if key == "" || !strings.HasPrefix(key, "/") {
		return newErr(CodeInvalid, key, "keys must start with /")
	}
	owner := cmd.OwnerEpoch != 0
	switch {
	case key == model.KeyOwner || strings.HasPrefix(model.KeyOwner, key):
		return newErr(CodeForbidden, key, "the owner record changes only by claim_owner")
	case hasPrefixAny(key, model.PrefixTaskStatus, model.PrefixChangefeedStatus, model.PrefixGC):
		if !owner {
			return newErr(CodeForbidden, key, "only the owner writes this key")
		}
	case hasPrefixAny(key, model.PrefixTaskPosition, model.PrefixTaskWorkload):
		if owner && op.Type != OpPut {
			return nil // the owner cleans up after dead captures
		}
		prefix := model.PrefixTaskPosition
		if strings.HasPrefix(key, model.PrefixTaskWorkload) {
			prefix = model.PrefixTaskWorkload
		}
		_, capture, err := model.SplitTaskKey(prefix, key)
		if err != nil {
			return newErr(CodeInvalid, key, "%v", err)
		}
		if cmd.Capture == nil || cmd.Capture.ID != capture {
			return newErr(CodeForbidden, key, "only capture %s writes its own progress", capture)
		}
	case strings.HasPrefix(key, model.PrefixCapture):
		if !owner || op.Type == OpPut {
			return newErr(CodeForbidden, key, "captures register themselves; only the owner removes them")
		}
	case hasPrefixAny(key, model.PrefixChangefeedInfo, model.PrefixUser):
	default:
		return newErr(CodeForbidden, key, "key is outside the metadata key space")
	}
	if op.Type == OpDeletePrefix && len(key) < 3 {
		return newErr(CodeInvalid, key, "refusing to delete a top-level prefix")
	}
	return nil
}

func (t *txn) applyOp(op Op) *Error {
	switch op.Type {
	case OpPut:
		if !json.Valid(op.Value) {
			return newErr(CodeInvalid, op.Key, "value is not valid JSON")
		}
		createRev := t.index
		if old, ok := t.get(op.Key); ok {
			createRev = old.CreateRev
		}
		if err := t.kv.Put([]byte(op.Key), encodeValue(createRev, t.index, op.Value)); err != nil {
			return newErr(CodeInternal, op.Key, "%v", err)
		}
		t.record(Event{Key: op.Key, Value: append([]byte(nil), op.Value...), ModRev: t.index})
	case OpDelete:
		if _, ok := t.get(op.Key); !ok {
			return nil
		}
		if err := t.kv.Delete([]byte(op.Key)); err != nil {
			return newErr(CodeInternal, op.Key, "%v", err)
		}
		t.record(Event{Key: op.Key, ModRev: t.index, Deleted: true})
	case OpDeletePrefix:
		var keys [][]byte
		c := t.kv.Cursor()
		p := []byte(op.Key)
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := t.kv.Delete(k); err != nil {
				return newErr(CodeInternal, string(k), "%v", err)
			}
			t.record(Event{Key: string(k), ModRev: t.index, Deleted: true})
		}
	default:
		return newErr(CodeInvalid, op.Key, "unknown operation %q", op.Type)
	}
	return nil
}

func (t *txn) record(e Event) {
	t.events = append(t.events, e)
	if strings.HasPrefix(e.Key, model.PrefixTaskStatus) {
		if cf, _, err := model.SplitTaskKey(model.PrefixTaskStatus, e.Key); err == nil {
			if t.touchedFeeds == nil {
				t.touchedFeeds = map[string]struct{}{}
			}
			t.touchedFeeds[cf] = struct{}{}
		}
	}
}

// checkTableOwnership refuses any command after which one table of a
// changefeed would be assigned to two captures.
func (t *txn) checkTableOwnership() *Error {
	for cf := range t.touchedFeeds {
		holder := map[model.TableID]string{}
		prefix := []byte(model.TaskStatusPrefix(cf))
		c := t.kv.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var ts model.TaskStatus
			if err := json.Unmarshal(decodeValue(k, v).Value, &ts); err != nil {
				return newErr(CodeInvalid, string(k), "task status does not decode: %v", err)
			}
			_, capture, _ := model.SplitTaskKey(model.PrefixTaskStatus, string(k))
			for table := range ts.Tables {
				if other, dup := holder[table]; dup {
					return newErr(CodeTableConflict, string(k), "table %d of changefeed %s would run on both %s and %s", table, cf, other, capture)
				}
				holder[table] = capture
			}
		}
	}
	return nil
}

func (t *txn) claimOwner(cmd Command) *Error {
	if cmd.NodeID == "" {
		return newErr(CodeInvalid, model.KeyOwner, "claim_owner needs a node_id")
	}
	info := model.OwnerInfo{Epoch: t.index, NodeID: cmd.NodeID, Since: time.UnixMilli(cmd.UnixMilli).UTC()}
	v, _ := json.Marshal(info)
	return t.applyOp(Op{Type: OpPut, Key: model.KeyOwner, Value: v})
}

func (t *txn) registerCapture(cmd Command) *Error {
	if len(cmd.Ops) != 1 || cmd.Ops[0].Type != OpPut {
		return newErr(CodeInvalid, "", "register_capture carries exactly one put of the capture record")
	}
	op := cmd.Ops[0]
	var info model.CaptureInfo
	if err := json.Unmarshal(op.Value, &info); err != nil {
		return newErr(CodeInvalid, op.Key, "capture record does not decode: %v", err)
	}
	if info.ID == "" || op.Key != model.CaptureKey(info.ID) || info.Incarnation == 0 {
		return newErr(CodeInvalid, op.Key, "capture record must be stored under its own ID with a non-zero incarnation")
	}
	for _, c := range cmd.Conds {
		if err := t.checkCond(c); err != nil {
			return err
		}
	}
	return t.applyOp(op)
}
