package model

import "testing"

func TestColumnTypeRendersAsMySQLWritesIt(t *testing.T) {
	cases := []struct {
		typ  ColumnType
		want string
	}{
		{ColumnType{Kind: TypeBigInt, Unsigned: true}, "bigint unsigned"},
		{ColumnType{Kind: TypeDecimal, Length: 65, Scale: 30}, "decimal(65,30)"},
		{ColumnType{Kind: TypeDatetime, Fsp: 6}, "datetime(6)"},
		{ColumnType{Kind: TypeTime}, "time"},
		{ColumnType{Kind: TypeVarchar, Length: 64, Charset: "utf8mb4"}, "varchar(64)"},
		{ColumnType{Kind: TypeEnum, Elems: []string{"a", "it's"}}, "enum('a','it''s')"},
		{ColumnType{Kind: TypeBit, Length: 7}, "bit(7)"},
		{ColumnType{Kind: TypeJSON}, "json"},
	}
	for _, c := range cases {
		if got := c.typ.String(); got != c.want {
			t.Errorf("%+v renders %q, want %q", c.typ, got, c.want)
		}
		if err := c.typ.Validate(); err != nil {
			t.Errorf("%s: %v", c.want, err)
		}
	}
	if got := (ColumnType{Kind: TypeText, Charset: "utf8mb4", Collation: "utf8mb4_bin"}).SQL(); got != "text CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" {
		t.Errorf("text SQL = %q", got)
	}
}

func TestColumnTypeValidateRefusesOutOfRange(t *testing.T) {
	for _, typ := range []ColumnType{
		{Kind: TypeDecimal, Length: 66},
		{Kind: TypeDecimal, Length: 5, Scale: 6},
		{Kind: TypeBit, Length: 65},
		{Kind: TypeDatetime, Fsp: 7},
		{Kind: TypeEnum},
		{Kind: "money"},
	} {
		if err := typ.Validate(); err == nil {
			t.Errorf("%+v validated", typ)
		}
	}
}

func TestValueMissingIsTheZeroValueAndDiffersFromNull(t *testing.T) {
	var v Value
	if !v.IsMissing() || v.IsNull() || v.HasData() {
		t.Fatalf("zero Value = %#v", v)
	}
	if Null().Equal(v) {
		t.Fatal("NULL equals missing")
	}
	if !JSONEqual(`{"a": 1, "b": [1, 2]}`, `{"b":[1,2],"a":1}`) || JSONEqual(`{"a":1}`, `{"a":2}`) {
		t.Fatal("JSONEqual")
	}
}

func TestHandleKeyPrefersPrimaryThenNotNullUnique(t *testing.T) {
	s := &TableSchema{
		Table: TableName{ID: 1, Schema: "s", Table: "t"},
		Columns: []Column{
			{Name: "a", Type: ColumnType{Kind: TypeInt}, Nullable: true},
			{Name: "b", Type: ColumnType{Kind: TypeInt}},
		},
		Indexes: []Index{{Name: "ua", Columns: []string{"a"}, Unique: true}, {Name: "ub", Columns: []string{"b"}, Unique: true}},
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if hk := s.HandleKey(); hk == nil || hk.Name != "ub" {
		t.Fatalf("handle key = %+v, want ub (a is nullable)", hk)
	}
	s.Indexes = append(s.Indexes, Index{Name: "PRIMARY", Columns: []string{"a"}, Primary: true})
	if hk := s.HandleKey(); hk == nil || !hk.Primary {
		t.Fatalf("handle key = %+v, want the primary key", hk)
	}
	r := &RowChange{Schema: s, Op: OpUpdate, CommitTs: 5,
		Before: []Value{IntValue(1), IntValue(2)}, After: []Value{IntValue(3), IntValue(2)}}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if !r.KeyChanged() {
		t.Fatal("an update of the primary key column is a key change")
	}
}

func TestQuoteStringEscapesWhatMySQLNeeds(t *testing.T) {
	for in, want := range map[string]string{
		"":                   `''`,
		"plain":              `'plain'`,
		"it's":               `'it''s'`,
		`back\slash`:         `'back\\slash'`,
		"nul\x00byte":        `'nul\0byte'`,
		"line\nfeed\rreturn": `'line\nfeed\rreturn'`,
		"ctrl-z\x1a":         `'ctrl-z\Z'`,
		"'\\\x00\n\r\x1a":    `'''\\\0\n\r\Z'`,
		"ünïcödé and \x7f":   "'ünïcödé and \x7f'",
		"\xff\xfe raw bytes": "'\xff\xfe raw bytes'",
	} {
		if got := QuoteString(in); got != want {
			t.Errorf("QuoteString(%q) = %s, want %s", in, got, want)
		}
	}
}
