package model

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
)

// Per-table maps are the bulk of the metadata: a capture's position lists
// every table it runs, its task status every table it is assigned. At tens
// of thousands of tables encoding/json's reflection (and its sorting of map
// keys as strings) was a fifth of a leader's CPU: the processors' reports,
// the state machine's apply and the owner's tick each encode or decode them
// (issue 16). These types write and read the very same JSON by hand; a
// value the fast reader does not recognise (another spacing, a field added
// by a newer build) goes to encoding/json, so every valid document still
// decodes as before.

// TableNames is a list of tables: [{"id":<id>,"schema":"<s>","table":"<t>"},...].
// A changefeed status lists every table of the changefeed.
type TableNames []TableName

func (l TableNames) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("null"), nil
	}
	b := make([]byte, 0, 2+len(l)*48)
	b = append(b, '[')
	for i, t := range l {
		if !plainString(t.Schema) || !plainString(t.Table) {
			// Escaping is encoding/json's to do.
			return json.Marshal([]TableName(l))
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = strconv.AppendInt(b, t.ID, 10)
		b = append(b, `,"schema":"`...)
		b = append(b, t.Schema...)
		b = append(b, `","table":"`...)
		b = append(b, t.Table...)
		b = append(b, `"}`...)
	}
	return append(b, ']'), nil
}

func (l *TableNames) UnmarshalJSON(data []byte) error {
	if v, ok := fastTableNames(data); ok {
		if v != nil {
			*l = v
		}
		return nil
	}
	var v []TableName
	if err := json.Unmarshal(data, &v); err != nil {
		return err // unwrapped, as above
	}
	if v != nil {
		*l = v
	}
	return nil
}

// plainString: s is written in JSON as its bytes between quotes, by
// encoding/json too (printable ASCII, none of what it escapes).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

func fastTableNames(data []byte) (TableNames, bool) {
	s := scan{b: data}
	null, empty, ok := s.open('[', ']')
	if !ok || null {
		return nil, ok
	}
	l := TableNames{}
	if empty {
		return l, true
	}
	for {
		s.space()
		var t TableName
		if !s.byte('{') || !s.key("id") {
			return nil, false
		}
		id, ok := s.int()
		if !ok || !s.comma() || !s.key("schema") {
			return nil, false
		}
		if t.Schema, ok = s.str(); !ok || !s.comma() || !s.key("table") {
			return nil, false
		}
		if t.Table, ok = s.str(); !ok {
			return nil, false
		}
		t.ID = id
		s.space()
		if !s.byte('}') {
			return nil, false
		}
		l = append(l, t)
		if more, ok := s.next(']'); !ok || !more {
			return l, ok
		}
	}
}

// TableTs maps tables to a timestamp: {"<table id>":<ts>,...}.
type TableTs map[TableID]Ts

// TableReplicas maps tables to their assignment: {"<table id>":{"start_ts":<ts>},...}.
type TableReplicas map[TableID]TableReplicaInfo

func (m TableTs) MarshalJSON() ([]byte, error) {
	return appendTableMap(m, func(b []byte, v Ts) []byte { return strconv.AppendUint(b, v, 10) }), nil
}

func (m *TableTs) UnmarshalJSON(data []byte) error {
	return decodeTableMap(data, (*map[TableID]Ts)(m), func(s *scan) (Ts, bool) { return s.uint() })
}

func (m TableReplicas) MarshalJSON() ([]byte, error) {
	return appendTableMap(m, func(b []byte, v TableReplicaInfo) []byte { return appendField(b, "start_ts", v.StartTs) }), nil
}

func (m *TableReplicas) UnmarshalJSON(data []byte) error {
	return decodeTableMap(data, (*map[TableID]TableReplicaInfo)(m), func(s *scan) (TableReplicaInfo, bool) {
		ts, ok := s.field("start_ts")
		return TableReplicaInfo{StartTs: ts}, ok
	})
}

func (m TaskWorkload) MarshalJSON() ([]byte, error) {
	return appendTableMap(m, func(b []byte, v WorkloadInfo) []byte { return appendField(b, "workload", v.Workload) }), nil
}

func (m *TaskWorkload) UnmarshalJSON(data []byte) error {
	return decodeTableMap(data, (*map[TableID]WorkloadInfo)(m), func(s *scan) (WorkloadInfo, bool) {
		w, ok := s.field("workload")
		return WorkloadInfo{Workload: w}, ok
	})
}

// appendField writes {"name":v}, the one-field objects of the maps above
// (scan.field reads them).
func appendField(b []byte, name string, v uint64) []byte {
	b = append(b, `{"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	b = strconv.AppendUint(b, v, 10)
	return append(b, '}')
}

// appendTableMap writes m as a JSON object with its keys in ascending
// numeric order (encoding/json orders them as strings; readers do not care,
// and a fixed order keeps equal maps byte-equal). A nil map is null, as
// encoding/json writes it.
func appendTableMap[V any](m map[TableID]V, appendValue func([]byte, V) []byte) []byte {
	if m == nil {
		return []byte("null")
	}
	ids := make([]TableID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b := make([]byte, 0, 2+len(m)*32)
	b = append(b, '{')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendInt(b, id, 10)
		b = append(b, '"', ':')
		b = appendValue(b, m[id])
	}
	return append(b, '}')
}

// decodeTableMap reads a JSON object of table IDs into *dst: by hand when
// it has the shape the writers above produce, through encoding/json
// otherwise. null leaves *dst alone, as encoding/json does.
func decodeTableMap[V any](data []byte, dst *map[TableID]V, value func(*scan) (V, bool)) error {
	if m, ok := fastTableMap(data, value); ok {
		if m != nil {
			*dst = m
		}
		return nil
	}
	// The slow path decodes into the plain map type, whose decoding has
	// no method to come back here.
	var m map[TableID]V
	if err := json.Unmarshal(data, &m); err != nil {
		// Unwrapped: encoding/json names the record's field in a type
		// error it gets back from here, as it did before this type.
		return err
	}
	if m != nil {
		*dst = m
	}
	return nil
}

func fastTableMap[V any](data []byte, value func(*scan) (V, bool)) (map[TableID]V, bool) {
	s := scan{b: data}
	null, empty, ok := s.open('{', '}')
	if !ok || null {
		return nil, ok
	}
	m := make(map[TableID]V)
	if empty {
		return m, true
	}
	for {
		s.space()
		if !s.byte('"') {
			return nil, false
		}
		id, ok := s.int()
		if !ok || !s.byte('"') {
			return nil, false
		}
		s.space()
		if !s.byte(':') {
			return nil, false
		}
		s.space()
		v, ok := value(&s)
		if !ok {
			return nil, false
		}
		if _, dup := m[id]; dup {
			// encoding/json keeps the last; let it decide.
			return nil, false
		}
		m[id] = v
		if more, ok := s.next('}'); !ok || !more {
			return m, ok
		}
	}
}

// scan is a cursor over a JSON document for the fast readers; every method
// reports false rather than guess, and the caller falls back.
type scan struct {
	b []byte
	i int
}

func (s *scan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scan) end() bool { return s.i == len(s.b) }

// open reads the start of the whole document: null, or the opening byte of
// a list or an object, which may close at once (empty; then the document
// must end there).
func (s *scan) open(opening, closing byte) (null, empty, ok bool) {
	s.space()
	if s.literal("null") {
		s.space()
		return true, false, s.end()
	}
	if !s.byte(opening) {
		return false, false, false
	}
	s.space()
	if s.byte(closing) {
		s.space()
		return false, true, s.end()
	}
	return false, false, true
}

// next reads what follows an element of a list or an object: a comma
// (more follows) or the closing byte, which must end the document.
func (s *scan) next(closing byte) (more, ok bool) {
	s.space()
	if s.byte(',') {
		return true, true
	}
	if !s.byte(closing) {
		return false, false
	}
	s.space()
	return false, s.end()
}

func (s *scan) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scan) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// digits is the run of ASCII digits at the cursor: JSON's integers, without
// the leading zeros JSON forbids.
func (s *scan) digits() ([]byte, bool) {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	d := s.b[start:s.i]
	if len(d) == 0 || (len(d) > 1 && d[0] == '0') {
		return nil, false
	}
	// A fraction or an exponent is a number this reader does not take.
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return nil, false
	}
	return d, true
}

func (s *scan) uint() (uint64, bool) {
	d, ok := s.digits()
	if !ok {
		return 0, false
	}
	var v uint64
	for _, c := range d {
		n := uint64(c - '0')
		if v > (math.MaxUint64-n)/10 {
			return 0, false
		}
		v = v*10 + n
	}
	return v, true
}

// int reads a map key's decimal table ID (the quotes are the caller's).
func (s *scan) int() (int64, bool) {
	neg := s.byte('-')
	u, ok := s.uint()
	if !ok || u > math.MaxInt64 {
		return 0, false
	}
	if neg {
		return -int64(u), true
	}
	return int64(u), true
}

// key reads "name": (with spaces around).
func (s *scan) key(name string) bool {
	s.space()
	if !s.byte('"') || !s.literal(name) || !s.byte('"') {
		return false
	}
	s.space()
	if !s.byte(':') {
		return false
	}
	s.space()
	return true
}

func (s *scan) comma() bool {
	s.space()
	return s.byte(',')
}

// str reads a string with nothing escaped in it; anything else (an escape,
// a control or non-ASCII byte, which encoding/json would check or replace)
// is left to the fallback.
func (s *scan) str() (string, bool) {
	if !s.byte('"') {
		return "", false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			v := string(s.b[start:s.i])
			s.i++
			return v, true
		}
		if c < 0x20 || c > 0x7e || c == '\\' {
			return "", false
		}
		s.i++
	}
	return "", false
}

// field reads {"name":<uint>}, the one-field objects of the maps above.
func (s *scan) field(name string) (uint64, bool) {
	if !s.byte('{') || !s.key(name) {
		return 0, false
	}
	v, ok := s.uint()
	if !ok {
		return 0, false
	}
	s.space()
	return v, s.byte('}')
}
