package datagen

import (
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/raftcdc/raftcdc/model"
)

// Column names of version 2 tables that have a role beyond carrying a
// typed value.
const (
	colID      = "id"      // the key number, bigint
	colRegion  = "region"  // the second primary key column of composite-key tables
	colSeq     = "seq"     // the event number within the table, bigint unsigned
	colPayload = "payload" // row-size characters, mediumtext
)

type colRole uint8

const (
	roleValue colRole = iota
	roleID
	roleRegion
	roleSeq
	rolePayload
)

// colSpec is a column and how its values are made.
type colSpec struct {
	col      model.Column
	role     colRole
	nameHash uint64
	// addedIn is 1 + the DDL cycle whose ADD COLUMN created the column, or
	// 0 for columns of the base schema.
	addedIn uint64
}

func newSpec(name string, t model.ColumnType, nullable bool, role colRole) colSpec {
	return colSpec{col: model.Column{Name: name, Type: t, Nullable: nullable}, role: role, nameHash: hashString(name)}
}

// compositeKey says which table slots have the two-column primary key
// (region, id): every third, starting with the second.
func compositeKey(slot uint64) bool { return slot%3 == 1 }

var (
	enumElems = []string{"red", "green", "blue", "ü-umlaut", "it's"}
	setElems  = []string{"a", "b", "c", "d", "é"}
)

func ct(k model.TypeKind) model.ColumnType { return model.ColumnType{Kind: k} }

// valueColumns are the typed columns of every base schema: each kind of
// model.AllTypeKinds at least once, with the parameters whose edges matter
// (unsigned, decimal(65,30), fsp 6).
func valueColumns() []colSpec {
	utf := func(k model.TypeKind, n int) model.ColumnType {
		return model.ColumnType{Kind: k, Length: n, Charset: "utf8mb4", Collation: "utf8mb4_bin"}
	}
	v := func(name string, t model.ColumnType) colSpec { return newSpec(name, t, true, roleValue) }
	return []colSpec{
		v("c_tinyint", ct(model.TypeTinyInt)),
		v("c_tinyint_u", model.ColumnType{Kind: model.TypeTinyInt, Unsigned: true}),
		v("c_smallint", ct(model.TypeSmallInt)),
		v("c_smallint_u", model.ColumnType{Kind: model.TypeSmallInt, Unsigned: true}),
		v("c_mediumint", ct(model.TypeMediumInt)),
		v("c_mediumint_u", model.ColumnType{Kind: model.TypeMediumInt, Unsigned: true}),
		v("c_int", ct(model.TypeInt)),
		v("c_int_u", model.ColumnType{Kind: model.TypeInt, Unsigned: true}),
		v("c_bigint", ct(model.TypeBigInt)),
		v("c_bigint_u", model.ColumnType{Kind: model.TypeBigInt, Unsigned: true}),
		v("c_decimal", model.ColumnType{Kind: model.TypeDecimal, Length: 10, Scale: 3}),
		v("c_decimal65", model.ColumnType{Kind: model.TypeDecimal, Length: 65, Scale: 30}),
		v("c_float", ct(model.TypeFloat)),
		v("c_double", ct(model.TypeDouble)),
		v("c_char", utf(model.TypeChar, 8)),
		v("c_varchar", utf(model.TypeVarchar, 64)),
		v("c_tinytext", utf(model.TypeTinyText, 0)),
		v("c_text", utf(model.TypeText, 0)),
		v("c_mediumtext", utf(model.TypeMediumText, 0)),
		v("c_longtext", utf(model.TypeLongText, 0)),
		v("c_tinyblob", ct(model.TypeTinyBlob)),
		v("c_blob", ct(model.TypeBlob)),
		v("c_mediumblob", ct(model.TypeMediumBlob)),
		v("c_longblob", ct(model.TypeLongBlob)),
		v("c_binary", model.ColumnType{Kind: model.TypeBinary, Length: 8}),
		v("c_varbinary", model.ColumnType{Kind: model.TypeVarbinary, Length: 32}),
		v("c_date", ct(model.TypeDate)),
		v("c_datetime", model.ColumnType{Kind: model.TypeDatetime, Fsp: 6}),
		v("c_timestamp", model.ColumnType{Kind: model.TypeTimestamp, Fsp: 3}),
		v("c_time", model.ColumnType{Kind: model.TypeTime, Fsp: 6}),
		v("c_year", ct(model.TypeYear)),
		v("c_enum", model.ColumnType{Kind: model.TypeEnum, Elems: enumElems, Charset: "utf8mb4", Collation: "utf8mb4_bin"}),
		v("c_set", model.ColumnType{Kind: model.TypeSet, Elems: setElems, Charset: "utf8mb4", Collation: "utf8mb4_bin"}),
		v("c_bit1", model.ColumnType{Kind: model.TypeBit, Length: 1}),
		v("c_bit64", model.ColumnType{Kind: model.TypeBit, Length: 64}),
		v("c_json", ct(model.TypeJSON)),
	}
}

// addableTypes are the types an ADD COLUMN picks from.
var addableTypes = []model.ColumnType{
	ct(model.TypeBigInt),
	{Kind: model.TypeVarchar, Length: 32, Charset: "utf8mb4", Collation: "utf8mb4_bin"},
	{Kind: model.TypeDecimal, Length: 20, Scale: 6},
	{Kind: model.TypeDatetime, Fsp: 6},
	ct(model.TypeJSON),
	{Kind: model.TypeEnum, Elems: []string{"p", "q", "r"}, Charset: "utf8mb4", Collation: "utf8mb4_bin"},
	ct(model.TypeBlob),
	ct(model.TypeDouble),
	{Kind: model.TypeTime, Fsp: 3},
	{Kind: model.TypeBit, Length: 8},
	{Kind: model.TypeInt, Unsigned: true},
}

// baseColumns is the schema of a freshly created table of a slot.
func baseColumns(composite bool) []colSpec {
	cols := []colSpec{newSpec(colID, ct(model.TypeBigInt), false, roleID)}
	if composite {
		cols = append(cols, newSpec(colRegion, model.ColumnType{Kind: model.TypeVarchar, Length: 16, Charset: "utf8mb4", Collation: "utf8mb4_bin"}, false, roleRegion))
	}
	cols = append(cols,
		newSpec(colSeq, model.ColumnType{Kind: model.TypeBigInt, Unsigned: true}, false, roleSeq),
		newSpec(colPayload, model.ColumnType{Kind: model.TypeMediumText, Charset: "utf8mb4", Collation: "utf8mb4_bin"}, false, rolePayload),
	)
	return append(cols, valueColumns()...)
}

// addedColumn is the column the ADD COLUMN of a slot's cycle c adds.
func (h *History) addedColumn(slot, c uint64) colSpec {
	t := addableTypes[mix64(h.seedHash^slot*0x9e3779b97f4a7c15^c*0xbf58476d1ce4e5b9)%uint64(len(addableTypes))]
	sp := newSpec("added_"+strconv.FormatUint(c, 10), t, true, roleValue)
	sp.addedIn = c + 1
	return sp
}

// droppedColumn is the base column the DROP COLUMN of a slot's cycle c
// removes: one of the typed value columns, never a key, seq or payload.
func (h *History) droppedColumn(slot, c uint64) string {
	vals := valueColumns()
	return vals[mix64(h.seedHash^slot*0x94d049bb133111eb^c*0x632be59bd9b4e019)%uint64(len(vals))].col.Name
}

// columnsOf is a slot's column list in cycle c after `phase` of its DDLs.
func (h *History) columnsOf(slot, c, phase uint64) []colSpec {
	base := h.base[0]
	if compositeKey(slot) {
		base = h.base[1]
	}
	cols := append(make([]colSpec, 0, len(base)+1), base...)
	if phase >= phaseAddColumn+1 {
		cols = append(cols, h.addedColumn(slot, c))
	}
	if phase >= phaseDropColumn+1 {
		drop := h.droppedColumn(slot, c)
		for i := range cols {
			if cols[i].col.Name == drop {
				cols = append(cols[:i], cols[i+1:]...)
				break
			}
		}
	}
	return cols
}

// ---- values ----

// rng is a small splitmix64 stream seeded from one hash, for values that
// need more than 64 bits of randomness (strings, decimals).
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

func (r *rng) intn(n uint64) uint64 { return r.next() % n }

// textRunes mixes ASCII, the characters CSV and JSON must escape, and
// multi-byte UTF-8 (2, 3 and 4 bytes).
var textRunes = []rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,;\"'\\\n\t\r<>&éüßκλ日本語中文😀🚀")

// edgeTexts are strings that sinks and encoders get wrong.
var edgeTexts = []string{"", "NULL", `\N`, "a,b\"c'd\\e\r\nf", "日本語テキスト", "😀", " leading", "null"}

// arena collects the text and bytes of one image's values so that an image
// costs a few allocations instead of one per column: values are appended
// to two buffers and sliced out of them when the image is complete.
type arena struct {
	s   []byte     // text of string values
	b   []byte     // content of binary values
	fix []arenaFix // which value is which slice
}

type arenaFix struct {
	col, start, end int
	bytes           bool
}

var arenaPool = sync.Pool{New: func() any { return &arena{s: make([]byte, 0, 2048), b: make([]byte, 0, 1024)} }}

func (a *arena) reset() {
	a.s, a.b, a.fix = a.s[:0], a.b[:0], a.fix[:0]
}

func (a *arena) str(col, start int) model.Value {
	a.fix = append(a.fix, arenaFix{col: col, start: start, end: len(a.s)})
	return model.Value{Kind: model.ValueString}
}

func (a *arena) bin(col, start int) model.Value {
	a.fix = append(a.fix, arenaFix{col: col, start: start, end: len(a.b), bytes: true})
	return model.Value{Kind: model.ValueBytes}
}

// finish fills in the string and bytes values of img: one string and one
// byte slice for all of them (binary values are capped so that appending
// to one cannot reach its neighbour).
func (a *arena) finish(img []model.Value) {
	var text string
	if len(a.s) > 0 {
		text = string(a.s)
	}
	var bin []byte
	if len(a.b) > 0 {
		bin = append([]byte(nil), a.b...)
	}
	for _, f := range a.fix {
		if f.bytes {
			img[f.col].B = bin[f.start:f.end:f.end]
			if img[f.col].B == nil {
				img[f.col].B = []byte{}
			}
		} else {
			img[f.col].S = text[f.start:f.end]
		}
	}
}

// genValue makes a column value from a hash: NULL sometimes for nullable
// columns, an edge value of the type sometimes, a random value otherwise.
// Every value is in model.Value's canonical form for the type. Text and
// bytes go into the arena as the value of column col.
func genValue(c *model.Column, h uint64, a *arena, col int) model.Value {
	if c.Nullable && h%13 == 0 {
		return model.Null()
	}
	r := rng{s: h}
	edge := (h>>8)%7 == 0
	t := &c.Type
	switch {
	case t.IsInteger():
		min, max, umax := model.IntRange(t.Kind)
		if t.Unsigned {
			if edge {
				return model.UintValue([]uint64{0, umax, 1, uint64(max), uint64(max) + 1}[r.intn(5)])
			}
			if umax == math.MaxUint64 {
				return model.UintValue(r.next())
			}
			return model.UintValue(r.intn(umax + 1))
		}
		if edge {
			return model.IntValue([]int64{min, max, 0, -1, 1}[r.intn(5)])
		}
		if max == math.MaxInt64 {
			return model.IntValue(int64(r.next()))
		}
		return model.IntValue(min + int64(r.intn(uint64(max-min)+1)))
	}
	s0, b0 := len(a.s), len(a.b)
	switch t.Kind {
	case model.TypeDecimal:
		a.s = appendDecimal(a.s, &r, t.Length, t.Scale, edge)
		return a.str(col, s0)
	case model.TypeFloat:
		if edge {
			return model.FloatValue(float64([]float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 0, -1.5, 1}[r.intn(6)]))
		}
		return model.FloatValue(float64(float32(int32(r.next())) / float32(uint64(1)<<r.intn(24))))
	case model.TypeDouble:
		if edge {
			return model.FloatValue([]float64{math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 0, 0.1, -2.5}[r.intn(6)])
		}
		return model.FloatValue(float64(int64(r.next())) / float64(uint64(1)<<r.intn(60)))
	case model.TypeChar:
		a.s = appendText(a.s, &r, int(r.intn(uint64(t.Length)+1)), 0, edge)
		for len(a.s) > s0 && a.s[len(a.s)-1] == ' ' { // MySQL strips char's trailing spaces
			a.s = a.s[:len(a.s)-1]
		}
		return a.str(col, s0)
	case model.TypeVarchar:
		a.s = appendText(a.s, &r, int(r.intn(uint64(t.Length)+1)), 0, edge)
		return a.str(col, s0)
	case model.TypeTinyText:
		a.s = appendText(a.s, &r, int(r.intn(64)), 255, edge)
		return a.str(col, s0)
	case model.TypeText:
		a.s = appendText(a.s, &r, int(r.intn(100)), 65535, edge)
		return a.str(col, s0)
	case model.TypeMediumText, model.TypeLongText:
		if edge && r.intn(16) == 0 { // rarely, a large value
			a.s = appendText(a.s, &r, 4000, 0, false)
		} else {
			a.s = appendText(a.s, &r, int(r.intn(100)), 0, edge)
		}
		return a.str(col, s0)
	case model.TypeTinyBlob:
		a.b = appendBytes(a.b, &r, int(r.intn(256)), edge)
		return a.bin(col, b0)
	case model.TypeBlob, model.TypeMediumBlob:
		a.b = appendBytes(a.b, &r, int(r.intn(100)), edge)
		return a.bin(col, b0)
	case model.TypeLongBlob:
		if edge && r.intn(16) == 0 {
			a.b = append(a.b, make([]byte, 8192)...)
		} else {
			a.b = appendBytes(a.b, &r, int(r.intn(100)), edge)
		}
		return a.bin(col, b0)
	case model.TypeBinary:
		// Padded with zero bytes, as MySQL stores it.
		a.b = appendBytes(a.b, &r, int(r.intn(uint64(t.Length)+1)), edge)
		for len(a.b)-b0 < t.Length {
			a.b = append(a.b, 0)
		}
		return a.bin(col, b0)
	case model.TypeVarbinary:
		a.b = appendBytes(a.b, &r, int(r.intn(uint64(t.Length)+1)), edge)
		return a.bin(col, b0)
	case model.TypeDate:
		a.s = genDate(&r, edge).AppendFormat(a.s, "2006-01-02")
		return a.str(col, s0)
	case model.TypeDatetime:
		a.s = appendDatetime(a.s, genDatetime(&r, edge), t.Fsp)
		return a.str(col, s0)
	case model.TypeTimestamp:
		a.s = appendDatetime(a.s, genTimestamp(&r, edge), t.Fsp)
		return a.str(col, s0)
	case model.TypeTime:
		a.s = appendTime(a.s, &r, t.Fsp, edge)
		return a.str(col, s0)
	case model.TypeYear:
		if edge {
			return model.IntValue([]int64{1901, 2155, 2000}[r.intn(3)])
		}
		return model.IntValue(1901 + int64(r.intn(255)))
	case model.TypeEnum:
		return model.StringValue(t.Elems[r.intn(uint64(len(t.Elems)))])
	case model.TypeSet:
		bits := r.next()
		if edge {
			bits = []uint64{0, math.MaxUint64}[r.intn(2)]
		}
		for i, e := range t.Elems {
			if bits&(1<<uint(i)) != 0 {
				if len(a.s) > s0 {
					a.s = append(a.s, ',')
				}
				a.s = append(a.s, e...)
			}
		}
		return a.str(col, s0)
	case model.TypeBit:
		v := r.next()
		if edge {
			v = []uint64{0, math.MaxUint64}[r.intn(2)]
		}
		if t.Length < 64 {
			v &= 1<<uint(t.Length) - 1
		}
		return model.UintValue(v)
	case model.TypeJSON:
		a.s = appendJSON(a.s, &r, edge)
		return a.str(col, s0)
	}
	a.s = appendText(a.s, &r, 8, 0, false)
	return a.str(col, s0)
}

// appendText appends n characters (fewer if maxBytes would be exceeded; 0
// means no byte limit), or an edge string.
func appendText(dst []byte, r *rng, n, maxBytes int, edge bool) []byte {
	if edge {
		s := edgeTexts[r.intn(uint64(len(edgeTexts)))]
		if (maxBytes == 0 || len(s) <= maxBytes) && utf8.RuneCountInString(s) <= max(n, 1) {
			return append(dst, s...)
		}
	}
	start := len(dst)
	var v uint64
	for i := range n {
		if i%8 == 0 {
			v = r.next()
		}
		c := textRunes[v%uint64(len(textRunes))]
		v >>= 8
		if maxBytes > 0 && len(dst)-start+utf8.RuneLen(c) > maxBytes {
			break
		}
		dst = utf8.AppendRune(dst, c)
	}
	return dst
}

// appendBytes appends n random bytes, or for an edge value alternating
// zero bytes and 0xff, which text-based encodings mangle first.
func appendBytes(dst []byte, r *rng, n int, edge bool) []byte {
	if edge {
		for i := range n {
			dst = append(dst, byte(0xff*(i%2)))
		}
		return dst
	}
	var v uint64
	for i := range n {
		if i%8 == 0 {
			v = r.next()
		}
		dst = append(dst, byte(v))
		v >>= 8
	}
	return dst
}

// appendDecimal appends a decimal(p,s) in canonical form: exactly s
// fraction digits, no leading zeros, no "-0".
func appendDecimal(b []byte, r *rng, p, s int, edge bool) []byte {
	intDigits := p - s
	neg := r.intn(2) == 0
	if edge {
		switch r.intn(4) {
		case 0, 1: // the extremes
			if neg {
				b = append(b, '-')
			}
			if intDigits == 0 {
				b = append(b, '0')
			}
			for range intDigits {
				b = append(b, '9')
			}
			if s > 0 {
				b = append(b, '.')
				for range s {
					b = append(b, '9')
				}
			}
			return b
		case 2: // zero
			b = append(b, '0')
			if s > 0 {
				b = append(b, '.')
				for range s {
					b = append(b, '0')
				}
			}
			return b
		default: // the smallest magnitude
			if s == 0 {
				if neg {
					return append(b, "-1"...)
				}
				return append(b, '1')
			}
			if neg {
				b = append(b, '-')
			}
			b = append(b, "0."...)
			for range s - 1 {
				b = append(b, '0')
			}
			return append(b, '1')
		}
	}
	var digits [65]byte
	n := int(r.intn(uint64(intDigits) + 1))
	var v uint64
	for i := range n + s {
		if i%18 == 0 {
			v = r.next()
		}
		digits[i] = '0' + byte(v%10)
		v /= 10
	}
	ip, fp := digits[:n], digits[n:n+s]
	for len(ip) > 0 && ip[0] == '0' {
		ip = ip[1:]
	}
	allZero := len(ip) == 0
	for _, d := range fp {
		if d != '0' {
			allZero = false
		}
	}
	if neg && !allZero {
		b = append(b, '-')
	}
	if len(ip) == 0 {
		b = append(b, '0')
	}
	b = append(b, ip...)
	if s > 0 {
		b = append(b, '.')
		b = append(b, fp...)
	}
	return b
}

var (
	minDate = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	// days from 1000-01-01 to 9999-12-31
	dateSpan = uint64(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).Sub(minDate).Hours()/24) + 1
)

func genDate(r *rng, edge bool) time.Time {
	if edge {
		return []time.Time{minDate, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)}[r.intn(4)]
	}
	return minDate.AddDate(0, 0, int(r.intn(dateSpan)))
}

func genDatetime(r *rng, edge bool) time.Time {
	if edge && r.intn(2) == 0 {
		return []time.Time{minDate, time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)}[r.intn(2)]
	}
	d := genDate(r, false)
	return d.Add(time.Duration(r.intn(86400*1000000)) * time.Microsecond)
}

func genTimestamp(r *rng, edge bool) time.Time {
	const lo, hi = 1, 2147483647 // MySQL's TIMESTAMP range, in seconds
	if edge {
		return []time.Time{time.Unix(lo, 0).UTC(), time.Unix(hi, 999999000).UTC()}[r.intn(2)]
	}
	return time.Unix(lo+int64(r.intn(hi-lo)), int64(r.intn(1000000))*1000).UTC()
}

// appendDatetime renders "YYYY-MM-DD HH:MM:SS" with exactly fsp digits,
// truncating the fraction to fsp digits.
func appendDatetime(dst []byte, t time.Time, fsp int) []byte {
	dst = t.AppendFormat(dst, "2006-01-02 15:04:05")
	return append(dst, model.FormatFsp(t.Nanosecond()/1000, fsp)...)
}

// appendTime appends a time(fsp) in [-838:59:59, 838:59:59].
func appendTime(b []byte, r *rng, fsp int, edge bool) []byte {
	const maxSec = 838*3600 + 59*60 + 59
	var neg bool
	var sec uint64
	var micros int
	if edge {
		switch r.intn(3) {
		case 0:
			sec = maxSec
		case 1:
			sec, neg = maxSec, true
		}
	} else {
		neg = r.intn(2) == 0
		sec = r.intn(maxSec + 1)
		if sec < maxSec {
			micros = int(r.intn(1000000))
		}
	}
	m := micros
	if fsp < 6 {
		p := int(math.Pow10(6 - fsp))
		m = micros / p * p
	}
	if sec == 0 && m == 0 {
		neg = false
	}
	if neg {
		b = append(b, '-')
	}
	hh := sec / 3600
	if hh < 10 {
		b = append(b, '0')
	}
	b = strconv.AppendUint(b, hh, 10)
	b = append(b, ':', byte('0'+sec%3600/60/10), byte('0'+sec%3600/60%10), ':', byte('0'+sec%60/10), byte('0'+sec%60%10))
	return append(b, model.FormatFsp(m, fsp)...)
}

// appendJSON appends a JSON document: usually a small object, sometimes a
// large one, a scalar, an empty container or JSON's own null.
func appendJSON(b []byte, r *rng, edge bool) []byte {
	var scratch [96]byte
	if edge {
		switch r.intn(5) {
		case 0:
			return append(b, `null`...)
		case 1:
			return append(b, `[]`...)
		case 2:
			return append(b, `"only a string: \"q\" \\ ü"`...)
		case 3:
			return append(b, `-12.5`...)
		}
		if r.intn(4) != 0 {
			return append(b, `{"k":"v"}`...)
		}
		b = append(b, `{"items":[`...)
		for i := range 150 {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"i":`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `,"s":`...)
			b = appendJSONString(b, appendText(scratch[:0], r, 12, 0, false))
			b = append(b, `,"ok":true,"none":null}`...)
		}
		return append(b, "]}"...)
	}
	b = append(b, `{"n":`...)
	b = strconv.AppendInt(b, int64(r.next()%2000001)-1000000, 10)
	b = append(b, `,"s":`...)
	b = appendJSONString(b, appendText(scratch[:0], r, int(r.intn(20)), 0, false))
	b = append(b, `,"a":[`...)
	for i := range int(r.intn(4)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, r.intn(1000), 10)
	}
	b = append(b, `],"o":{"ok":`...)
	b = strconv.AppendBool(b, r.intn(2) == 0)
	return append(b, `,"x":null}}`...)
}

// appendJSONString quotes s as a JSON string.
func appendJSONString(b []byte, s []byte) []byte {
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// hashString is FNV-1a, folded through mix64.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}
