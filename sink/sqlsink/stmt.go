package sqlsink

import (
	"fmt"

	"github.com/raftcdc/raftcdc/model"
)

// StmtKind is what a planned statement does.
type StmtKind uint8

const (
	// Insert is a plain (multi-row) INSERT of after images; a row that is
	// already there is a duplicate-key error.
	Insert StmtKind = iota
	// Upsert writes after images idempotently: REPLACE on MySQL, INSERT …
	// ON CONFLICT DO UPDATE on PostgreSQL.
	Upsert
	// Delete removes rows by the handle key of their before images (by every
	// column for a table without a usable key).
	Delete
	// Update sets a row's after image where its before image's key is.
	Update
)

var stmtKindNames = [...]string{"insert", "upsert", "delete", "update"}

func (k StmtKind) String() string {
	if int(k) < len(stmtKindNames) {
		return stmtKindNames[k]
	}
	return fmt.Sprintf("StmtKind(%d)", k)
}

// Stmt is one planned statement over rows of one table and schema version.
// Which image a kind uses: Insert and Upsert the after image, Delete the
// before image, Update the before image's key (or the after image's, when
// the upstream sent no before image) and the after image's values.
type Stmt struct {
	Kind   StmtKind
	Schema *model.TableSchema
	Rows   []*model.RowChange
}

// Table is the statement's table.
func (s *Stmt) Table() model.TableName { return s.Schema.Table }

// StmtError attributes a backend error to the statement that caused it.
type StmtError struct {
	Stmt *Stmt
	Err  error
}

func (e *StmtError) Error() string {
	return fmt.Sprintf("%s of %d row(s) in %s.%s: %v", e.Stmt.Kind, len(e.Stmt.Rows), e.Stmt.Schema.Table.Schema, e.Stmt.Schema.Table.Table, e.Err)
}

func (e *StmtError) Unwrap() error { return e.Err }

// KeyImage is the image that identifies the row a statement of this kind
// acts on.
func KeyImage(kind StmtKind, r *model.RowChange) []model.Value {
	switch kind {
	case Delete:
		return r.Before
	case Update:
		if r.Before != nil {
			return r.Before
		}
		return r.After
	}
	return r.After
}
