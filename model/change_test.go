package model

import (
	"strings"
	"testing"
	"unsafe"
)

// A row is allocated per change and held by every sorter and sink in
// between, so its size matters: the snapshot mark shares the word of the
// size hint instead of adding one (104 bytes would round up to the 112-byte
// size class).
func TestRowChangeStaysNinetySixBytes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the size is pinned for 64-bit platforms")
	}
	if n := unsafe.Sizeof(RowChange{}); n != 96 {
		t.Fatalf("RowChange is %d bytes, want 96", n)
	}
}

func TestSnapshotReadMustBeAnInsert(t *testing.T) {
	s := &TableSchema{Table: TableName{Schema: "d", Table: "t"}, Version: 1,
		Columns: []Column{{Name: "a", Type: ColumnType{Kind: TypeInt}}}}
	img := []Value{IntValue(1)}
	ins := &RowChange{Schema: s, Op: OpInsert, After: img, Snapshot: true}
	if err := ins.Validate(); err != nil {
		t.Fatalf("a snapshot insert: %v", err)
	}
	for _, r := range []*RowChange{
		{Schema: s, Op: OpUpdate, Before: img, After: img, Snapshot: true},
		{Schema: s, Op: OpDelete, Before: img, Snapshot: true},
	} {
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "snapshot read must be an insert") {
			t.Errorf("a snapshot %s: got %v", r.Op, err)
		}
	}
}
