package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// Layout (TiCDC's storage sink, without the partition separator):
//
//	metadata                                          {"checkpoint-ts":N}
//	{schema}/meta/schema_{ts}_{checksum}.json         database DDL
//	{schema}/{table}/meta/schema_{version}_{checksum}.json
//	{schema}/{table}/{version}/{date}/CDC{n}.{json|csv}
//	{schema}/{table}/{version}/{date}/meta/CDC.index  the highest data file name in use
//
// {version} is the table's schema version (the commit ts of the DDL that
// made it), {date} the commit date per date-separator, {n} zero-padded to
// file-index-width.

// MetadataFile is the checkpoint file at the root.
const MetadataFile = "metadata"

const (
	indexFile      = "meta/CDC.index"
	dataFilePrefix = "CDC"
)

// Metadata is the content of the metadata file.
type Metadata struct {
	CheckpointTs model.Ts `json:"checkpoint-ts"`
}

// DataDir identifies one data directory.
type DataDir struct {
	Schema, Table string
	Version       uint64
	Date          string // "" for date-separator=none
}

// Path is the directory's path relative to the root.
func (d DataDir) Path() string {
	p := d.Schema + "/" + d.Table + "/" + strconv.FormatUint(d.Version, 10)
	if d.Date != "" {
		p += "/" + d.Date
	}
	return p
}

// dateOf is the commit date of ts per the date separator, in UTC.
func dateOf(ts model.Ts, sep string) string {
	t := model.TsTime(ts).UTC()
	switch sep {
	case DateYear:
		return t.Format("2006")
	case DateMonth:
		return t.Format("2006-01")
	case DateDay:
		return t.Format("2006-01-02")
	}
	return ""
}

func dataFileName(n uint64, width int, ext string) string {
	s := strconv.FormatUint(n, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return dataFilePrefix + s + ext
}

// parseDataFileName returns the index of "CDC000012.json".
func parseDataFileName(name, ext string) (uint64, bool) {
	if !strings.HasPrefix(name, dataFilePrefix) || !strings.HasSuffix(name, ext) {
		return 0, false
	}
	digits := name[len(dataFilePrefix) : len(name)-len(ext)]
	if len(digits) < minFileIndexWidth {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

var dateRE = regexp.MustCompile(`^\d{4}(-\d{2}(-\d{2})?)?$`)

// ParseDataPath splits a data file path (relative to the root) into its
// directory and file index.
func ParseDataPath(p, ext string) (DataDir, uint64, bool) {
	parts := strings.Split(p, "/")
	if len(parts) != 4 && len(parts) != 5 {
		return DataDir{}, 0, false
	}
	n, ok := parseDataFileName(parts[len(parts)-1], ext)
	if !ok {
		return DataDir{}, 0, false
	}
	v, err := strconv.ParseUint(parts[2], 10, 64)
	if err != nil {
		return DataDir{}, 0, false
	}
	d := DataDir{Schema: parts[0], Table: parts[1], Version: v}
	if len(parts) == 5 {
		if !dateRE.MatchString(parts[3]) {
			return DataDir{}, 0, false
		}
		d.Date = parts[3]
	}
	return d, n, true
}

// ---- schema files ----

// TableColumn is a column in a schema file, as TiCDC writes it.
type TableColumn struct {
	Name      string `json:"ColumnName"`
	Type      string `json:"ColumnType"`
	Precision string `json:"ColumnPrecision,omitempty"`
	Scale     string `json:"ColumnScale,omitempty"`
	Nullable  string `json:"ColumnNullable,omitempty"`
	IsPK      string `json:"ColumnIsPk,omitempty"`
}

// TableDefinition is a schema file: one table version, or a database-level
// DDL (Table "" and no columns).
type TableDefinition struct {
	Table        string        `json:"Table"`
	Schema       string        `json:"Schema"`
	Version      int           `json:"Version"`
	TableVersion uint64        `json:"TableVersion"`
	Query        string        `json:"Query"`
	Type         int           `json:"Type"`
	Columns      []TableColumn `json:"TableColumns"`
	TotalColumns int           `json:"TableColumnsTotal"`
}

// schemaFileVersion is the version of the schema file format.
const schemaFileVersion = 1

// tidbActionType is TiDB's DDL action number of a DDL kind, which schema
// files carry in "Type".
func tidbActionType(k model.DDLKind) int {
	switch k {
	case model.DDLCreateSchema:
		return 1
	case model.DDLDropSchema:
		return 2
	case model.DDLCreateTable:
		return 3
	case model.DDLDropTable:
		return 4
	case model.DDLAddColumn:
		return 5
	case model.DDLDropColumn:
		return 6
	case model.DDLAddIndex:
		return 7
	case model.DDLDropIndex:
		return 8
	case model.DDLTruncateTable:
		return 11
	case model.DDLModifyColumn, model.DDLRenameColumn:
		return 12
	case model.DDLRenameTable:
		return 14
	}
	return 0
}

// defaultFlen is MySQL's display width of a type without one.
func defaultFlen(t model.ColumnType) int {
	switch t.Kind {
	case model.TypeTinyInt:
		return signWidth(t, 4)
	case model.TypeSmallInt:
		return signWidth(t, 6)
	case model.TypeMediumInt:
		return signWidth(t, 9)
	case model.TypeInt:
		return signWidth(t, 11)
	case model.TypeBigInt:
		return 20
	case model.TypeFloat:
		return 12
	case model.TypeDouble:
		return 22
	case model.TypeYear:
		return 4
	case model.TypeTinyText, model.TypeTinyBlob:
		return 255
	case model.TypeText, model.TypeBlob:
		return 65535
	case model.TypeMediumText, model.TypeMediumBlob:
		return 16777215
	case model.TypeLongText, model.TypeLongBlob:
		return 4294967295
	case model.TypeBit:
		return 1
	}
	return 0
}

// signWidth drops the sign's character from a signed width.
func signWidth(t model.ColumnType, signed int) int {
	if t.Unsigned {
		return signed - 1
	}
	return signed
}

// tableColumn renders a column as TiCDC's schema file does: the upper-case
// type with UNSIGNED, the length or precision, the scale or fsp, NOT NULL
// as "false", the primary key as "true".
func tableColumn(c model.Column, pk bool) TableColumn {
	t := c.Type
	tc := TableColumn{Name: c.Name, Type: strings.ToUpper(string(t.Kind))}
	if t.Unsigned && (t.IsInteger() || t.Kind == model.TypeDecimal || t.Kind == model.TypeFloat || t.Kind == model.TypeDouble) {
		tc.Type += " UNSIGNED"
	}
	flen := t.Length
	if flen == 0 {
		flen = defaultFlen(t)
	}
	switch {
	case t.Kind == model.TypeDecimal:
		p := t.Length
		if p == 0 {
			p = 10
		}
		tc.Precision, tc.Scale = strconv.Itoa(p), strconv.Itoa(t.Scale)
	case t.IsTime() && t.Kind != model.TypeDate:
		if t.Fsp > 0 {
			tc.Scale = strconv.Itoa(t.Fsp)
		}
	case t.IsInteger(), t.IsText(), t.IsBinary(), t.Kind == model.TypeBit, t.Kind == model.TypeYear, t.Kind == model.TypeFloat, t.Kind == model.TypeDouble:
		tc.Precision = strconv.Itoa(flen)
	}
	if !c.Nullable {
		tc.Nullable = "false"
	}
	if pk {
		tc.IsPK = "true"
	}
	return tc
}

// TableDefinitionOf renders one table version; query and kind are the DDL
// that made it ("" and "" for a version the sink found without a DDL).
func TableDefinitionOf(s *model.TableSchema, query string, kind model.DDLKind) TableDefinition {
	def := TableDefinition{
		Table: s.Table.Table, Schema: s.Table.Schema, Version: schemaFileVersion,
		TableVersion: s.Version, Query: query, Type: tidbActionType(kind),
	}
	var pk []string
	if ix := s.PrimaryKey(); ix != nil {
		pk = ix.Columns
	}
	for _, c := range s.Columns {
		isPK := false
		for _, k := range pk {
			if k == c.Name {
				isPK = true
			}
		}
		def.Columns = append(def.Columns, tableColumn(c, isPK))
	}
	def.TotalColumns = len(def.Columns)
	return def
}

// checksum is a 32-bit hash of the definition without its query, type and
// version, so that two versions with the same columns share it.
func (d TableDefinition) checksum() uint32 {
	cols := append([]TableColumn(nil), d.Columns...)
	sort.Slice(cols, func(i, j int) bool { return cols[i].Name < cols[j].Name })
	b, _ := json.Marshal(struct {
		Table, Schema string
		Columns       []TableColumn
	}{d.Table, d.Schema, cols})
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32()
}

// Path is the schema file's path relative to the root.
func (d TableDefinition) Path() string {
	name := fmt.Sprintf("schema_%d_%010d.json", d.TableVersion, d.checksum())
	if d.Table == "" {
		return d.Schema + "/meta/" + name
	}
	return d.Schema + "/" + d.Table + "/meta/" + name
}

// Marshal is the file content, indented as TiCDC writes it.
func (d TableDefinition) Marshal() []byte {
	b, _ := json.MarshalIndent(d, "", "    ")
	return b
}

// schemaFilePrefix is the prefix of a table's schema files of one version.
func schemaFilePrefix(schema, table string, version uint64) string {
	if table == "" {
		return schema + "/meta/schema_" + strconv.FormatUint(version, 10) + "_"
	}
	return schema + "/" + table + "/meta/schema_" + strconv.FormatUint(version, 10) + "_"
}

// ---- reading ----

// ReadMetadata reads the checkpoint from a sink root.
func ReadMetadata(ctx context.Context, st Store) (Metadata, error) {
	b, err := st.Get(ctx, MetadataFile)
	if err != nil {
		return Metadata{}, fmt.Errorf("read storage sink metadata: %w", err)
	}
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return Metadata{}, fmt.Errorf("read storage sink metadata: %w", err)
	}
	return m, nil
}

// OpenDir returns the Store of a sink root directory, for readers.
func OpenDir(root string) Store { return &localStore{root: root} }

// ReadSchemaFiles reads every schema file under the root: table versions
// and database DDLs, ordered by version.
func ReadSchemaFiles(ctx context.Context, st Store) ([]TableDefinition, error) {
	names, err := st.List(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []TableDefinition
	for _, n := range names {
		if !schemaFileRE.MatchString(n) {
			continue
		}
		b, err := st.Get(ctx, n)
		if err != nil {
			return nil, err
		}
		var d TableDefinition
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("schema file %s: %w", n, err)
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TableVersion < out[j].TableVersion })
	return out, nil
}

var schemaFileRE = regexp.MustCompile(`(^|/)meta/schema_\d+_\d{10}\.json$`)

// DataFile is one data file found under a root.
type DataFile struct {
	Path  string
	Dir   DataDir
	Index uint64
}

// ListDataFiles lists the data files of a protocol under the root, in the
// order a consumer reads them: by schema, table, version, date, index.
func ListDataFiles(ctx context.Context, st Store, ext string) ([]DataFile, error) {
	names, err := st.List(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []DataFile
	for _, n := range names {
		d, idx, ok := ParseDataPath(n, ext)
		if !ok {
			continue
		}
		out = append(out, DataFile{Path: n, Dir: d, Index: idx})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Dir.Schema != b.Dir.Schema {
			return a.Dir.Schema < b.Dir.Schema
		}
		if a.Dir.Table != b.Dir.Table {
			return a.Dir.Table < b.Dir.Table
		}
		if a.Dir.Version != b.Dir.Version {
			return a.Dir.Version < b.Dir.Version
		}
		if a.Dir.Date != b.Dir.Date {
			return a.Dir.Date < b.Dir.Date
		}
		return a.Index < b.Index
	})
	return out, nil
}

// isNotExist reports a missing object.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
