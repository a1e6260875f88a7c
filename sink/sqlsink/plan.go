package sqlsink

import (
	"sort"

	"github.com/raftcdc/raftcdc/model"
)

// planInput is the rows of one unit of work (one upstream transaction's
// rows of one table, or a chunk of them) with its write mode.
type planInput struct {
	rows []*model.RowChange
	safe bool
}

type rowOp struct {
	kind StmtKind
	row  *model.RowChange
}

// hasUnchanged reports an after image with columns the upstream did not
// send (PostgreSQL TOAST): such a row can only be written by an UPDATE that
// leaves them out.
func hasUnchanged(r *model.RowChange) bool {
	for _, v := range r.After {
		if v.IsUnchanged() {
			return true
		}
	}
	return false
}

// opsFor turns one row change into statement operations.
//
// Safe (idempotent) mode: an insert becomes an upsert; an update whose
// handle key stays becomes an upsert of the after image, and one that
// changes the key becomes a delete of the old key and an upsert of the new
// row (a plain UPDATE could hit the new key's row that a later, already
// applied transaction wrote). A delete is idempotent as it is. Rows of a
// table without a usable key, and updates with unchanged (unsent) columns,
// cannot be made idempotent and are written plainly.
func opsFor(dst []rowOp, r *model.RowChange, safe bool) []rowOp {
	keyed := r.Schema.HandleKey() != nil
	switch r.Op {
	case model.OpInsert:
		if safe && keyed {
			return append(dst, rowOp{Upsert, r})
		}
		return append(dst, rowOp{Insert, r})
	case model.OpDelete:
		return append(dst, rowOp{Delete, r})
	default: // update
		if !safe || !keyed || hasUnchanged(r) {
			return append(dst, rowOp{Update, r})
		}
		if r.KeyChanged() {
			dst = append(dst, rowOp{Delete, r})
		}
		return append(dst, rowOp{Upsert, r})
	}
}

// kindPhase orders kinds when a batch may be reordered: deletes free keys
// before inserts take them.
func kindPhase(k StmtKind) int {
	switch k {
	case Delete:
		return 0
	case Update:
		return 1
	}
	return 2
}

// Plan turns a batch of units (which never conflict with each other: the
// conflict detector hands out only such sets) into statements.
//
// Order: rows keep their upstream order, and consecutive operations of one
// kind on one schema version form one multi-row statement (with batchDML)
// of at most maxRows rows, never holding one key twice (PostgreSQL refuses
// an upsert that touches a row twice, and a multi-row statement's effect on
// a repeated key would depend on the server). When no key hash repeats
// across the whole batch, the order of rows cannot matter, and the
// operations are regrouped by kind — deletes, then updates, then inserts —
// so that a batch of small mixed transactions still makes one statement per
// kind.
func Plan(in []planInput, batchDML bool, maxRows int) []Stmt {
	if maxRows < 1 {
		maxRows = 1
	}
	var ops []rowOp
	total := 0
	for _, u := range in {
		total += len(u.rows)
	}
	ops = make([]rowOp, 0, total+total/4)
	for _, u := range in {
		for _, r := range u.rows {
			ops = opsFor(ops, r, u.safe)
		}
	}
	if batchDML && len(ops) > 1 && disjoint(in) {
		sort.SliceStable(ops, func(i, j int) bool { return kindPhase(ops[i].kind) < kindPhase(ops[j].kind) })
	}
	var out []Stmt
	var seen map[uint64]bool
	for _, op := range ops {
		if n := len(out); batchDML && n > 0 {
			last := &out[n-1]
			if last.Kind == op.kind && last.Schema == op.row.Schema && len(last.Rows) < maxRows && op.kind != Update {
				h, ok := handleKeyHash(op.kind, op.row)
				if ok && !seen[h] {
					seen[h] = true
					last.Rows = append(last.Rows, op.row)
					continue
				}
				if !ok && op.kind == Insert {
					// Keyless inserts have no key to repeat.
					last.Rows = append(last.Rows, op.row)
					continue
				}
			}
		}
		out = append(out, Stmt{Kind: op.kind, Schema: op.row.Schema, Rows: []*model.RowChange{op.row}})
		seen = map[uint64]bool{}
		if h, ok := handleKeyHash(op.kind, op.row); ok {
			seen[h] = true
		}
	}
	return out
}

// disjoint reports whether no conflict hash appears in two rows of the
// batch; a row's own hashes may repeat (an update's key in its before and
// after image).
func disjoint(in []planInput) bool {
	owner := map[uint64]*model.RowChange{}
	for _, u := range in {
		for _, r := range u.rows {
			for _, h := range RowKeys(nil, r) {
				if o, ok := owner[h]; ok && o != r {
					return false
				}
				owner[h] = r
			}
		}
	}
	return true
}
