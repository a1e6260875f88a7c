package model

import "fmt"

// DDLKind is what a DDL does.
type DDLKind string

const (
	DDLCreateSchema   DDLKind = "create_schema"
	DDLDropSchema     DDLKind = "drop_schema"
	DDLCreateTable    DDLKind = "create_table"
	DDLDropTable      DDLKind = "drop_table"
	DDLTruncateTable  DDLKind = "truncate_table"
	DDLRenameTable    DDLKind = "rename_table"
	DDLAddColumn      DDLKind = "add_column"
	DDLDropColumn     DDLKind = "drop_column"
	DDLModifyColumn   DDLKind = "modify_column"
	DDLRenameColumn   DDLKind = "rename_column"
	DDLAddIndex       DDLKind = "add_index"
	DDLDropIndex      DDLKind = "drop_index"
	DDLUnknownOrOther DDLKind = "other"
)

// ChangesTableSet reports the kinds that add or remove tables of a
// changefeed at the DDL's ts.
func (k DDLKind) ChangesTableSet() bool {
	switch k {
	case DDLCreateTable, DDLDropTable, DDLTruncateTable, DDLDropSchema:
		return true
	}
	return false
}

// DDLEvent is one schema change, executed once downstream at CommitTs by the
// owner (the DDL barrier): every table's rows at or below CommitTs − 1 are
// flushed before it, and rows after it use the new schema versions.
type DDLEvent struct {
	CommitTs Ts `json:"commit_ts"`
	// StartTs identifies the upstream DDL (TiDB: the job's start ts); with
	// CommitTs it makes the event's identity for "already applied" checks.
	StartTs Ts      `json:"start_ts,omitempty"`
	Kind    DDLKind `json:"kind"`
	// Query is the statement in MySQL dialect, qualified with the schema
	// where it names a table, so that it can be executed without a USE.
	Query string `json:"query"`
	// Schema is the database the DDL acts in (for create/drop schema, the
	// database itself).
	Schema string `json:"schema"`
	// Tables are the tables the DDL touches, as named before it (a rename
	// lists the old name; a truncate the old table ID).
	Tables []TableName `json:"tables,omitempty"`
	// After holds each touched table's schema after the DDL, in the order of
	// Tables, with a create's new table and a truncate's or rename's new
	// identity; nil for a table that no longer exists (drop).
	After []*TableSchema `json:"after,omitempty"`
}

// String is a short description for logs and errors.
func (d *DDLEvent) String() string {
	return fmt.Sprintf("%s at %d: %s", d.Kind, d.CommitTs, d.Query)
}

// Validate checks the event's shape.
func (d *DDLEvent) Validate() error {
	if d.CommitTs == 0 {
		return fmt.Errorf("DDL %q has no commit ts", d.Query)
	}
	if d.Query == "" {
		return fmt.Errorf("DDL %s at %d has no statement", d.Kind, d.CommitTs)
	}
	if len(d.After) != 0 && len(d.After) != len(d.Tables) {
		return fmt.Errorf("DDL %s at %d: %d schemas after it for %d tables", d.Kind, d.CommitTs, len(d.After), len(d.Tables))
	}
	for _, s := range d.After {
		if s == nil {
			continue
		}
		if err := s.Validate(); err != nil {
			return fmt.Errorf("DDL %s at %d: %w", d.Kind, d.CommitTs, err)
		}
	}
	return nil
}
