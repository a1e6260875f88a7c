package model

// TableID identifies a table of the upstream, as TiDB does.
type TableID = int64

// TableName is a table's schema-qualified name and ID.
type TableName struct {
	ID     TableID `json:"id"`
	Schema string  `json:"schema"`
	Table  string  `json:"table"`
}

// String is schema.table, the form filter rules match against.
func (t TableName) String() string { return t.Schema + "." + t.Table }

// Op is the kind of a row change.
type Op string

const (
	OpInsert Op = "insert"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
)
