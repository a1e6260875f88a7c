package fsm

import (
	"bytes"
	"encoding/json"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// txn applies one command inside one bbolt transaction.
type txn struct {
	tx     *bolt.Tx
	kv     *bolt.Bucket
	index  uint64
	rules  Rules
	events []Event
}

func (t *txn) get(key string) (KV, bool) {
	raw := t.kv.Get([]byte(key))
	if raw == nil {
		return KV{}, false
	}
	return decodeValue([]byte(key), raw), true
}

// apply runs a command: the schema admits it (fences, key ownership), its
// conditions hold, its operations apply, and the schema's invariants hold
// afterwards — or nothing changes.
func (t *txn) apply(cmd Command) *Error {
	switch cmd.Kind {
	case KindTxn, "", KindClaimOwner, KindRegisterCapture:
	default:
		return newErr(CodeInvalid, "", "unknown command kind %q", cmd.Kind)
	}
	for _, op := range cmd.Ops {
		if op.Key == "" || !strings.HasPrefix(op.Key, "/") {
			return newErr(CodeInvalid, op.Key, "keys must start with /")
		}
		if op.Type == OpDeletePrefix && len(op.Key) < 3 {
			return newErr(CodeInvalid, op.Key, "refusing to delete a top-level prefix")
		}
	}
	r := Reader{kv: t.kv}
	ops, err := t.rules.Admit(r, cmd, t.index)
	if err != nil {
		return err
	}
	for _, c := range cmd.Conds {
		if err := t.checkCond(c); err != nil {
			return err
		}
	}
	for _, op := range ops {
		if err := t.applyOp(op); err != nil {
			return err
		}
	}
	if len(t.events) == 0 {
		return nil
	}
	changed := make([]string, len(t.events))
	for i, e := range t.events {
		changed[i] = e.Key
	}
	return t.rules.Check(r, changed)
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
		t.events = append(t.events, Event{Key: op.Key, Value: append([]byte(nil), op.Value...), ModRev: t.index})
	case OpDelete:
		if _, ok := t.get(op.Key); !ok {
			return nil
		}
		if err := t.kv.Delete([]byte(op.Key)); err != nil {
			return newErr(CodeInternal, op.Key, "%v", err)
		}
		t.events = append(t.events, Event{Key: op.Key, ModRev: t.index, Deleted: true})
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
			t.events = append(t.events, Event{Key: string(k), ModRev: t.index, Deleted: true})
		}
	default:
		return newErr(CodeInvalid, op.Key, "unknown operation %q", op.Type)
	}
	return nil
}
