package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
)

func TestParseURIDefaultsFromChangefeedID(t *testing.T) {
	cfg, err := ParseURI("postgres://repl:s3cret@db.example:6432/shop?sslmode=require", "Orders-Feed.1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Slot != "raftcdc_orders_feed_1" || cfg.Publication != cfg.Slot || cfg.PublicationGiven {
		t.Errorf("slot %q publication %q given %v", cfg.Slot, cfg.Publication, cfg.PublicationGiven)
	}
	if cfg.Snapshot != SnapshotInitial || cfg.HeartbeatInterval != 10*time.Second || cfg.SnapshotWorkers != DefaultSnapshotWorkers {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.Host != "db.example" || cfg.Port != "6432" || cfg.User != "repl" || cfg.Database != "shop" {
		t.Errorf("address: %+v", cfg)
	}
	if !strings.Contains(cfg.ConnString, "sslmode=require") || strings.Contains(cfg.ConnString, "slot=") {
		t.Errorf("connection string %q", cfg.ConnString)
	}
	if strings.Contains(cfg.Redacted(), "s3cret") || !strings.Contains(cfg.Redacted(), "repl") {
		t.Errorf("redacted %q", cfg.Redacted())
	}
}

func TestParseURIParameters(t *testing.T) {
	cfg, err := ParseURI("postgresql://u:p@h/db?slot=my_slot&publication=Pub+One&snapshot=never&heartbeat-interval=2s&snapshot-workers=8&table-poll-interval=1m&wal-warn-bytes=1000", "cf")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Slot != "my_slot" || cfg.Publication != "Pub One" || !cfg.PublicationGiven || cfg.Snapshot != SnapshotNever ||
		cfg.HeartbeatInterval != 2*time.Second || cfg.SnapshotWorkers != 8 || cfg.TablePoll != time.Minute || cfg.WALWarnBytes != 1000 || cfg.Port != "5432" {
		t.Errorf("%+v", cfg)
	}
}

func TestParseURIRejectsBadInputNamingIt(t *testing.T) {
	for _, tc := range []struct{ uri, cf, want string }{
		{"postgres://u:pw@h/db?slto=x", "cf", `parameter "slto" is unknown`},
		{"postgres://u:pw@h/db?slot=Bad-Name", "cf", `parameter "slot"`},
		{"postgres://u:pw@h/db?snapshot=always", "cf", `parameter "snapshot"`},
		{"postgres://u:pw@h/db?heartbeat-interval=0s", "cf", `parameter "heartbeat-interval"`},
		{"postgres://u:pw@h/db?heartbeat-interval=soon", "cf", `parameter "heartbeat-interval"`},
		{"postgres://u:pw@h/db?snapshot-workers=0", "cf", `parameter "snapshot-workers"`},
		{"postgres://u:pw@h/db?snapshot-workers=65", "cf", `parameter "snapshot-workers"`},
		{"postgres://u:pw@h/db?sslmode=maybe", "cf", `parameter "sslmode"`},
		{"postgres://u:pw@h/db?target_session_attrs=any", "cf", `parameter "target_session_attrs"`},
		{"postgres://u:pw@h/db?slot=a&slot=b", "cf", `"slot" is given 2 times`},
		{"postgres://u:pw@h/db?wal-warn-bytes=-1", "cf", `parameter "wal-warn-bytes"`},
		{"mysql://u:pw@h/db", "cf", "scheme must be postgres"},
		{"postgres://u:pw@/db", "cf", "no host"},
		{"postgres://u:pw@h:99999/db", "cf", "port"},
		{"postgres://h/db", "cf", "no user"},
		{"postgres://u:pw@h/", "cf", "name one database"},
		{"postgres://u:pw@h/db", "", "changefeed ID"},
		{"postgres://u:p%zzw@h/db", "cf", "does not parse"},
	} {
		_, err := ParseURI(tc.uri, tc.cf)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURI(%q): %v, want an error containing %q", tc.uri, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "zzw") {
			t.Errorf("ParseURI(%q): error shows the password: %v", tc.uri, err)
		}
	}
}

func TestDefaultSlotNameIsAValidIdentifier(t *testing.T) {
	for _, id := range []string{"a", "Feed-1", strings.Repeat("x", 100), "ünï"} {
		n := DefaultSlotName(id)
		if !identRe.MatchString(n) {
			t.Errorf("DefaultSlotName(%q) = %q, not a valid slot name", id, n)
		}
	}
}

func TestPositionRoundTripAndTsChain(t *testing.T) {
	p := &position{LSN: 0x1_0000_00AB, Ts: 42, Copy: []uint32{7, 3}, Cols: map[uint32]string{3: signature([]relCol{{Name: `a"b`, TypeOID: 23, Typmod: -1}, {Name: "c", TypeOID: 1043, Typmod: 14}})}, Slot: "s"}
	q, err := decodePosition(p.encode())
	if err != nil {
		t.Fatal(err)
	}
	if q.LSN != p.LSN || q.Ts != 42 || len(q.Copy) != 2 || q.Copy[0] != 3 || q.Slot != "s" {
		t.Errorf("round trip: %+v", q)
	}
	cols, err := parseSignature(q.Cols[3])
	if err != nil || len(cols) != 2 || cols[0].Name != `a"b` || cols[1].Typmod != 14 {
		t.Errorf("signature round trip: %+v %v", cols, err)
	}
	for _, bad := range []string{"", "{", `{"v":2,"lsn":"0/1"}`, `{"v":1,"lsn":"nope"}`} {
		if _, err := decodePosition(bad); err == nil {
			t.Errorf("decodePosition(%q) accepted", bad)
		}
	}
	// The chain: commit time when it moves forward, prev+2 when it does not.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := nextTs(0, t0)
	if a != model.TsFromTime(t0) {
		t.Errorf("first ts %d", a)
	}
	if b := nextTs(a, t0.Add(-time.Second)); b != a+2 {
		t.Errorf("a commit time going backwards gave %d, want %d", b, a+2)
	}
	if c := nextTs(a, t0.Add(time.Millisecond)); c != model.TsFromTime(t0.Add(time.Millisecond)) {
		t.Errorf("forward commit time gave %d", c)
	}
}

func TestTypeMappingAndCanonicalValues(t *testing.T) {
	enum := &pgType{OID: 90000, Name: "mood", Labels: []string{"sad", "ok"}}
	for _, tc := range []struct {
		t      *pgType
		typmod int32
		in     string
		kind   model.TypeKind
		want   model.Value
	}{
		{&pgType{OID: oidInt2}, -1, "-32768", model.TypeSmallInt, model.IntValue(-32768)},
		{&pgType{OID: oidInt4}, -1, "7", model.TypeInt, model.IntValue(7)},
		{&pgType{OID: oidInt8}, -1, "9223372036854775807", model.TypeBigInt, model.IntValue(9223372036854775807)},
		{&pgType{OID: oidBool}, -1, "t", model.TypeTinyInt, model.IntValue(1)},
		{&pgType{OID: oidNumeric}, (12<<16 | 3) + 4, "-0.500", model.TypeDecimal, model.StringValue("-0.500")},
		{&pgType{OID: oidNumeric}, -1, "1e-40", model.TypeLongText, model.StringValue("1e-40")},
		{&pgType{OID: oidFloat4}, -1, "0.1", model.TypeFloat, model.FloatValue(float64(float32(0.1)))},
		{&pgType{OID: oidFloat8}, -1, "-Infinity", model.TypeDouble, model.FloatValue(negInf())},
		{&pgType{OID: oidVarchar}, 24, "héllo", model.TypeVarchar, model.StringValue("héllo")},
		{&pgType{OID: oidBpchar}, 9, "ab   ", model.TypeChar, model.StringValue("ab")},
		{&pgType{OID: oidText}, -1, "x", model.TypeLongText, model.StringValue("x")},
		{&pgType{OID: oidBytea}, -1, `\x00ff`, model.TypeLongBlob, model.BytesValue([]byte{0, 0xff})},
		{&pgType{OID: oidDate}, -1, "2024-02-29", model.TypeDate, model.StringValue("2024-02-29")},
		{&pgType{OID: oidTime}, 3, "10:00:01.5", model.TypeTime, model.StringValue("10:00:01.500")},
		{&pgType{OID: oidTimestamp}, -1, "2024-01-02 03:04:05", model.TypeDatetime, model.StringValue("2024-01-02 03:04:05.000000")},
		{&pgType{OID: oidTimestamp}, 0, "2024-01-02 03:04:05", model.TypeDatetime, model.StringValue("2024-01-02 03:04:05")},
		{&pgType{OID: oidTimestamptz}, 2, "2024-01-02 03:04:05.1+00", model.TypeTimestamp, model.StringValue("2024-01-02 03:04:05.10")},
		{&pgType{OID: oidInterval}, -1, "P1DT3H", model.TypeVarchar, model.StringValue("P1DT3H")},
		{&pgType{OID: oidUUID}, -1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", model.TypeChar, model.StringValue("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")},
		{&pgType{OID: oidJSONB}, -1, `{"a": 1}`, model.TypeJSON, model.StringValue(`{"a": 1}`)},
		{&pgType{OID: 1007, Elem: &pgType{OID: oidInt4}}, -1, "{{1,2},{NULL,4}}", model.TypeJSON, model.StringValue("[[1,2],[null,4]]")},
		{&pgType{OID: 1009, Elem: &pgType{OID: oidText}}, -1, `{"a \"q\"","b,c",NULL,plain}`, model.TypeJSON, model.StringValue(`["a \"q\"","b,c",null,"plain"]`)},
		{&pgType{OID: 1000, Elem: &pgType{OID: oidBool}}, -1, "[0:1]={t,f}", model.TypeJSON, model.StringValue("[true,false]")},
		{enum, -1, "ok", model.TypeEnum, model.StringValue("ok")},
		{&pgType{OID: 9999, Name: "dom", Base: &pgType{OID: oidInt4}}, -1, "5", model.TypeInt, model.IntValue(5)},
		{&pgType{OID: 869, Name: "inet"}, -1, "10.0.0.1", model.TypeLongText, model.StringValue("10.0.0.1")},
	} {
		c := mapType(tc.t, tc.typmod)
		if c.typ.Kind != tc.kind {
			t.Errorf("type %d typmod %d: kind %s, want %s", tc.t.OID, tc.typmod, c.typ.Kind, tc.kind)
			continue
		}
		if err := c.typ.Validate(); err != nil {
			t.Errorf("type %d: %v", tc.t.OID, err)
		}
		v, err := c.decode([]byte(tc.in))
		if err != nil {
			t.Errorf("decode %q as %d: %v", tc.in, tc.t.OID, err)
			continue
		}
		if !v.Equal(tc.want) {
			t.Errorf("decode %q as %d: %#v, want %#v", tc.in, tc.t.OID, v, tc.want)
		}
		if v.HasData() && v.Kind != c.typ.ValueKind() {
			t.Errorf("decode %q: value kind %s, column needs %s", tc.in, v.Kind, c.typ.ValueKind())
		}
	}
	for _, tc := range []struct {
		t      *pgType
		typmod int32
		in     string
	}{
		{&pgType{OID: oidNumeric}, (12<<16 | 3) + 4, "NaN"},
		{&pgType{OID: oidDate}, -1, "infinity"},
		{&pgType{OID: oidDate}, -1, "0044-03-15 BC"},
		{&pgType{OID: oidTimestamptz}, -1, "2024-01-02 03:04:05+02"},
		{&pgType{OID: oidInt4}, -1, "x"},
		{&pgType{OID: oidBytea}, -1, "abc"},
		{&pgType{OID: 1007, Elem: &pgType{OID: oidInt4}}, -1, "{1,2"},
	} {
		c := mapType(tc.t, tc.typmod)
		if _, err := c.decode([]byte(tc.in)); err == nil {
			t.Errorf("decode %q as %d accepted", tc.in, tc.t.OID)
		}
	}
}

func negInf() float64 {
	var z float64
	return -1 / z
}
