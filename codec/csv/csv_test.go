package csv

import (
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/model/modeltest"
)

// employee is the table of TiCDC's CSV documentation example.
func employee() *model.TableSchema {
	vc := func(n int) model.ColumnType { return model.ColumnType{Kind: model.TypeVarchar, Length: n} }
	return &model.TableSchema{
		Table: model.TableName{ID: 1, Schema: "hr", Table: "employee"},
		Columns: []model.Column{
			{Name: "Id", Type: model.ColumnType{Kind: model.TypeInt}},
			{Name: "LastName", Type: vc(20), Nullable: true},
			{Name: "FirstName", Type: vc(30), Nullable: true},
			{Name: "HireDate", Type: model.ColumnType{Kind: model.TypeDate}, Nullable: true},
			{Name: "OfficeLocation", Type: vc(20), Nullable: true},
		},
	}
}

func emp(id int64, last, first, date, office string) []model.Value {
	return []model.Value{model.IntValue(id), model.StringValue(last), model.StringValue(first), model.StringValue(date), model.StringValue(office)}
}

// The documented example, line for line.
func TestCSVMatchesTheDocumentedExample(t *testing.T) {
	opts := DefaultOptions()
	opts.IncludeCommitTs = true
	opts.Terminator = "\n"
	enc, err := NewEncoder(opts)
	if err != nil {
		t.Fatal(err)
	}
	s := employee()
	rows := []*model.RowChange{
		{Schema: s, CommitTs: 433305438660591626, Op: model.OpInsert, After: emp(101, "Smith", "Bob", "2014-06-04", "New York")},
		{Schema: s, CommitTs: 433305438660591627, Op: model.OpUpdate, Before: emp(101, "Smith", "Bob", "2014-06-04", "New York"), After: emp(101, "Smith", "Bob", "2015-10-08", "Los Angeles")},
		{Schema: s, CommitTs: 433305438660591629, Op: model.OpDelete, Before: emp(101, "Smith", "Bob", "2017-03-13", "Dallas")},
		{Schema: s, CommitTs: 433305438660591630, Op: model.OpInsert, After: emp(102, "Alex", "Alice", "2017-03-14", "Shanghai")},
		{Schema: s, CommitTs: 433305438660591630, Op: model.OpUpdate, After: emp(102, "Alex", "Alice", "2018-06-15", "Beijing")},
	}
	var out []byte
	for _, r := range rows {
		if out, err = enc.AppendRow(out, r); err != nil {
			t.Fatal(err)
		}
	}
	want := `"I","employee","hr",433305438660591626,101,"Smith","Bob","2014-06-04","New York"
"U","employee","hr",433305438660591627,101,"Smith","Bob","2015-10-08","Los Angeles"
"D","employee","hr",433305438660591629,101,"Smith","Bob","2017-03-13","Dallas"
"I","employee","hr",433305438660591630,102,"Alex","Alice","2017-03-14","Shanghai"
"U","employee","hr",433305438660591630,102,"Alex","Alice","2018-06-15","Beijing"
`
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

// The documented type mapping: numbers bare, strings quoted, NULL as \N,
// binary in base64.
func TestCSVTypeMappingAsDocumented(t *testing.T) {
	cols := []struct {
		typ  model.ColumnType
		v    model.Value
		want string
	}{
		{model.ColumnType{Kind: model.TypeInt}, model.IntValue(123), `123`},
		{model.ColumnType{Kind: model.TypeDouble}, model.FloatValue(153.123), `153.123`},
		{model.ColumnType{Kind: model.TypeInt}, model.Null(), `\N`},
		{model.ColumnType{Kind: model.TypeTimestamp, Fsp: 6}, model.StringValue("1973-12-30 15:30:00.123456"), `"1973-12-30 15:30:00.123456"`},
		{model.ColumnType{Kind: model.TypeDate}, model.StringValue("2000-01-01"), `"2000-01-01"`},
		{model.ColumnType{Kind: model.TypeTime}, model.StringValue("23:59:59"), `"23:59:59"`},
		{model.ColumnType{Kind: model.TypeYear}, model.IntValue(1970), `1970`},
		{model.ColumnType{Kind: model.TypeVarchar, Length: 9}, model.StringValue("test"), `"test"`},
		{model.ColumnType{Kind: model.TypeVarbinary, Length: 9}, model.BytesValue([]byte("阿斯")), `"6Zi/5pav"`},
		{model.ColumnType{Kind: model.TypeBit, Length: 8}, model.UintValue(81), `81`},
		{model.ColumnType{Kind: model.TypeDecimal, Length: 14, Scale: 7}, model.StringValue("129012.1230000"), `"129012.1230000"`},
		{model.ColumnType{Kind: model.TypeEnum, Elems: []string{"a", "b"}}, model.StringValue("a"), `"a"`},
		{model.ColumnType{Kind: model.TypeSet, Elems: []string{"a", "b"}}, model.StringValue("a,b"), `"a,b"`},
	}
	enc, _ := NewEncoder(DefaultOptions())
	for _, c := range cols {
		s := &model.TableSchema{Table: model.TableName{Schema: "d", Table: "t"}, Columns: []model.Column{{Name: "c", Type: c.typ, Nullable: true}}}
		b, err := enc.AppendRow(nil, &model.RowChange{Schema: s, Op: model.OpInsert, After: []model.Value{c.v}})
		if err != nil {
			t.Fatal(err)
		}
		if want := `"I","t","d",` + c.want + "\r\n"; string(b) != want {
			t.Errorf("%s: %q, want %q", c.typ, b, want)
		}
	}
}

// Every type's edge values survive encode → decode, with TiCDC's options
// in several combinations.
func TestCSVRoundTripsEveryTypeUnderEveryOptionSet(t *testing.T) {
	s := modeltest.AllTypesSchema("db", "all_types", 9, 100)
	imgs := modeltest.EdgeImages()
	variants := map[string]func(*Options){
		"default":          func(*Options) {},
		"commit ts":        func(o *Options) { o.IncludeCommitTs = true },
		"old value":        func(o *Options) { o.OutputOldValue = true; o.IncludeCommitTs = true },
		"no quote":         func(o *Options) { o.Quote = "" },
		"no quote, 2-char": func(o *Options) { o.Quote = ""; o.Delimiter = "|~"; o.Null = `\N` },
		"no quote, all":    func(o *Options) { o.Quote = ""; o.IncludeCommitTs = true; o.OutputOldValue = true },
		"single quote":     func(o *Options) { o.Quote = "'"; o.Delimiter = ";"; o.Null = "" },
		"hex, LF":          func(o *Options) { o.BinaryEncoding = BinaryHex; o.Terminator = "\n"; o.Null = "NULL" },
	}
	for name, set := range variants {
		t.Run(name, func(t *testing.T) {
			opts := DefaultOptions()
			set(&opts)
			enc, err := NewEncoder(opts)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := NewDecoder(opts)
			if err != nil {
				t.Fatal(err)
			}
			var in []*model.RowChange
			for n, img := range imgs {
				in = append(in,
					&model.RowChange{Schema: s, CommitTs: model.Ts(100 + n), Op: model.OpInsert, After: img},
					&model.RowChange{Schema: s, CommitTs: model.Ts(200 + n), Op: model.OpUpdate, Before: imgs[(n+1)%len(imgs)], After: img},
					&model.RowChange{Schema: s, CommitTs: model.Ts(300 + n), Op: model.OpDelete, Before: img})
			}
			var data []byte
			for _, r := range in {
				if data, err = enc.AppendRow(data, r); err != nil {
					t.Fatal(err)
				}
			}
			recs, err := dec.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			out, err := dec.Rows(recs, s)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(in) {
				t.Fatalf("%d rows back, %d written", len(out), len(in))
			}
			for i, r := range in {
				got := out[i]
				if got.Op != r.Op || opts.IncludeCommitTs && got.CommitTs != r.CommitTs {
					t.Fatalf("row %d: %s at %d, want %s at %d", i, got.Op, got.CommitTs, r.Op, r.CommitTs)
				}
				same(t, s, i, "after", got.After, r.After)
				if r.Op == model.OpDelete || opts.OutputOldValue {
					same(t, s, i, "before", got.Before, r.Before)
				}
			}
		})
	}
}

func same(t *testing.T, s *model.TableSchema, row int, what string, got, want []model.Value) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("row %d %s: %d values, want %d", row, what, len(got), len(want))
	}
	if want == nil {
		return
	}
	for i, c := range s.Columns {
		if !model.ValueEqual(c.Type, got[i], want[i]) {
			t.Fatalf("row %d %s column %s (%s): got %#v, want %#v", row, what, c.Name, c.Type, got[i], want[i])
		}
	}
}

func TestCSVOptionsRefuseAmbiguousSettings(t *testing.T) {
	for name, set := range map[string]func(*Options){
		"empty delimiter":     func(o *Options) { o.Delimiter = "" },
		"long delimiter":      func(o *Options) { o.Delimiter = ",,," },
		"newline delimiter":   func(o *Options) { o.Delimiter = "\n" },
		"quote in delimiter":  func(o *Options) { o.Delimiter = `,"` },
		"two-char quote":      func(o *Options) { o.Quote = `""` },
		"numeric null":        func(o *Options) { o.Null = "0" },
		"null with delimiter": func(o *Options) { o.Null = "a,b" },
		"plain null unquoted": func(o *Options) { o.Quote = ""; o.Null = "NULL" },
		"unknown binary":      func(o *Options) { o.BinaryEncoding = "base32" },
		"odd terminator":      func(o *Options) { o.Terminator = "\r" },
	} {
		o := DefaultOptions()
		set(&o)
		if _, err := NewEncoder(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCSVDecodeRefusesMalformedInput(t *testing.T) {
	dec, _ := NewDecoder(DefaultOptions())
	for name, in := range map[string]string{
		"no terminator": `"I","t","d",1`,
		"open quote":    "\"I\",\"t\",\"d\",\"abc\r\n",
		"bad op":        "\"X\",\"t\",\"d\",1\r\n",
		"too short":     "\"I\",\"t\"\r\n",
		"junk after":    "\"I\",\"t\",\"d\",\"a\"b\r\n",
	} {
		if _, err := dec.Decode([]byte(in)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	s := employee()
	recs, err := dec.Decode([]byte("\"I\",\"employee\",\"hr\",x,\"a\",\"b\",\"c\",\"d\"\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Rows(recs, s); err == nil || !strings.Contains(err.Error(), "Id") {
		t.Errorf("bad int: %v", err)
	}
}
