package model

import (
	"fmt"
	"strings"
)

// Column is one column of a table.
type Column struct {
	Name     string     `json:"name"`
	Type     ColumnType `json:"type"`
	Nullable bool       `json:"nullable"`
}

// Index is a key of a table. Only the primary key and unique keys matter to
// replication (conflict detection, safe mode, partitioning); other indexes
// are carried so that a downstream created from the schema gets them too.
type Index struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Primary bool     `json:"primary,omitempty"`
	Unique  bool     `json:"unique,omitempty"`
}

// TableSchema is one version of a table's schema. Values are immutable once
// published: a row carries a pointer to the schema it was encoded against,
// and a DDL makes a new TableSchema with a new Version.
type TableSchema struct {
	Table TableName `json:"table"`
	// Version changes with every DDL that touches the table. Sources use the
	// commit ts of that DDL (or of the table's creation), so versions are
	// ordered and the same on every capture.
	Version uint64   `json:"version"`
	Columns []Column `json:"columns"`
	Indexes []Index  `json:"indexes,omitempty"`
}

// ColumnIndex is the position of a column by name, or -1.
func (s *TableSchema) ColumnIndex(name string) int {
	for i, c := range s.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// PrimaryKey is the primary key, or nil.
func (s *TableSchema) PrimaryKey() *Index {
	for i := range s.Indexes {
		if s.Indexes[i].Primary {
			return &s.Indexes[i]
		}
	}
	return nil
}

// UniqueKeys are the primary key and every unique key.
func (s *TableSchema) UniqueKeys() []Index {
	var out []Index
	for _, ix := range s.Indexes {
		if ix.Primary || ix.Unique {
			out = append(out, ix)
		}
	}
	return out
}

// HandleKey is the key that identifies a row: the primary key, or else the
// first unique key whose columns are all NOT NULL (as TiDB and MySQL pick
// it). Nil means the table has no usable key; sinks then order by table and
// cannot make replays idempotent.
func (s *TableSchema) HandleKey() *Index {
	if pk := s.PrimaryKey(); pk != nil {
		return pk
	}
	for i := range s.Indexes {
		ix := &s.Indexes[i]
		if !ix.Unique {
			continue
		}
		ok := true
		for _, c := range ix.Columns {
			if j := s.ColumnIndex(c); j < 0 || s.Columns[j].Nullable {
				ok = false
				break
			}
		}
		if ok {
			return ix
		}
	}
	return nil
}

// KeyColumns are the positions of an index's columns.
func (s *TableSchema) KeyColumns(ix *Index) []int {
	if ix == nil {
		return nil
	}
	out := make([]int, len(ix.Columns))
	for i, c := range ix.Columns {
		out[i] = s.ColumnIndex(c)
	}
	return out
}

// Validate checks that the schema is self-consistent: unique, non-empty
// column names, valid types, and keys that name existing columns.
func (s *TableSchema) Validate() error {
	if s.Table.Schema == "" || s.Table.Table == "" {
		return fmt.Errorf("table schema %q: schema and table names must not be empty", s.Table)
	}
	if len(s.Columns) == 0 {
		return fmt.Errorf("table %s: has no columns", s.Table)
	}
	seen := map[string]bool{}
	for _, c := range s.Columns {
		if c.Name == "" {
			return fmt.Errorf("table %s: a column has no name", s.Table)
		}
		if seen[strings.ToLower(c.Name)] {
			return fmt.Errorf("table %s: column %q appears twice", s.Table, c.Name)
		}
		seen[strings.ToLower(c.Name)] = true
		if err := c.Type.Validate(); err != nil {
			return fmt.Errorf("table %s column %s: %w", s.Table, c.Name, err)
		}
	}
	primaries := 0
	for _, ix := range s.Indexes {
		if ix.Primary {
			primaries++
		}
		if len(ix.Columns) == 0 {
			return fmt.Errorf("table %s: index %q has no columns", s.Table, ix.Name)
		}
		for _, c := range ix.Columns {
			if s.ColumnIndex(c) < 0 {
				return fmt.Errorf("table %s: index %q names unknown column %q", s.Table, ix.Name, c)
			}
		}
	}
	if primaries > 1 {
		return fmt.Errorf("table %s: has %d primary keys", s.Table, primaries)
	}
	return nil
}

// Clone is a deep copy, for building the next version.
func (s *TableSchema) Clone() *TableSchema {
	out := *s
	out.Columns = make([]Column, len(s.Columns))
	for i, c := range s.Columns {
		c.Type.Elems = append([]string(nil), c.Type.Elems...)
		out.Columns[i] = c
	}
	out.Indexes = make([]Index, len(s.Indexes))
	for i, ix := range s.Indexes {
		ix.Columns = append([]string(nil), ix.Columns...)
		out.Indexes[i] = ix
	}
	return &out
}

// CreateTableSQL renders the schema as a MySQL CREATE TABLE statement.
func (s *TableSchema) CreateTableSQL(ifNotExists bool) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	if ifNotExists {
		b.WriteString("IF NOT EXISTS ")
	}
	b.WriteString(QuoteIdent(s.Table.Schema) + "." + QuoteIdent(s.Table.Table) + " (")
	for i, c := range s.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(QuoteIdent(c.Name) + " " + c.Type.SQL())
		if !c.Nullable {
			b.WriteString(" NOT NULL")
		} else {
			// Explicit: MySQL 5.7 and MariaDB before 10.10 (without
			// explicit_defaults_for_timestamp) make a bare TIMESTAMP
			// column NOT NULL DEFAULT CURRENT_TIMESTAMP.
			b.WriteString(" NULL")
		}
	}
	for _, ix := range s.Indexes {
		cols := make([]string, len(ix.Columns))
		for i, c := range ix.Columns {
			cols[i] = QuoteIdent(c)
		}
		switch {
		case ix.Primary:
			b.WriteString(", PRIMARY KEY (" + strings.Join(cols, ", ") + ")")
		case ix.Unique:
			b.WriteString(", UNIQUE KEY " + QuoteIdent(ix.Name) + " (" + strings.Join(cols, ", ") + ")")
		default:
			b.WriteString(", KEY " + QuoteIdent(ix.Name) + " (" + strings.Join(cols, ", ") + ")")
		}
	}
	b.WriteString(")")
	return b.String()
}
