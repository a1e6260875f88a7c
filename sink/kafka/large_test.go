package kafka

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/raftcdc/raftcdc/codec/avro"
	"github.com/raftcdc/raftcdc/codec/avro/avrotest"
	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/codec/debezium"
	"github.com/raftcdc/raftcdc/codec/open"
	"github.com/raftcdc/raftcdc/codec/simple"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// Rows over max-message-bytes (the default 10 MiB) with each
// large-message-handle-option, for every protocol that offers it.

// bigRow is an insert (id 7) whose note column holds 12 MiB.
func bigRow(sc *model.TableSchema, ts model.Ts) *model.RowChange {
	return userRow(sc, model.OpInsert, ts, 7, 1, strings.Repeat("x", 12<<20))
}

const bigNote = 12 << 20

// standIn is what a consumer learns from the message sent for a row: its
// id, whether it says it carries only the handle key, and where the full
// value was stored (claim-check).
type standIn struct {
	id         string
	onlyKey    bool
	claimCheck string
}

// largeDecoder reads one protocol's row messages (open-protocol's may
// hold several rows) and the full values a claim check stores (the row's
// message value, as it would have been sent), returning the stored row's
// note.
type largeDecoder struct {
	rows   func(t *testing.T, r *kgo.Record) []standIn
	stored func(t *testing.T, value []byte) string
}

// standIns decodes every row message of a topic with one partition.
func (d largeDecoder) standIns(t *testing.T, recs map[int32][]*kgo.Record) (rows []standIn, bytes int) {
	t.Helper()
	if len(recs) > 1 {
		t.Fatalf("rows in %d partitions, want 1", len(recs))
	}
	for _, rs := range recs {
		for _, r := range rs {
			rows = append(rows, d.rows(t, r)...)
			bytes += len(r.Key) + len(r.Value)
		}
	}
	return rows, bytes
}

type largeProtocol struct {
	protocol   string
	claimCheck bool // avro refuses claim-check by design
	setup      func(t *testing.T) (params string, dec largeDecoder)
}

func jsonString(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%.80s is not a JSON string: %v", raw, err)
	}
	return s
}

func largeProtocols() []largeProtocol {
	fixed := func(params string, dec largeDecoder) func(*testing.T) (string, largeDecoder) {
		return func(*testing.T) (string, largeDecoder) { return params, dec }
	}
	return []largeProtocol{
		{ProtocolOpen, true, fixed("", largeDecoder{
			rows: func(t *testing.T, r *kgo.Record) []standIn {
				evs, err := open.Decode(r.Key, r.Value)
				if err != nil {
					t.Fatal(err)
				}
				var out []standIn
				for _, e := range evs {
					out = append(out, standIn{id: string(e.Row.Update["id"].Value), onlyKey: e.Key.OnlyHandleKey, claimCheck: e.Key.ClaimCheck})
				}
				return out
			},
			stored: func(t *testing.T, v []byte) string {
				var rv open.RowValue
				if err := json.Unmarshal(v, &rv); err != nil {
					t.Fatal(err)
				}
				return jsonString(t, rv.Update["note"].Value)
			},
		})},
		{ProtocolCanalJSON, true, fixed("enable-tidb-extension=true", largeDecoder{
			rows: func(t *testing.T, r *kgo.Record) []standIn {
				m, err := canal.Decode(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				return []standIn{{id: *m.Data[0]["id"], onlyKey: m.TiDB.OnlyHandleKey, claimCheck: m.TiDB.ClaimCheckLocation}}
			},
			stored: func(t *testing.T, v []byte) string {
				m, err := canal.Decode(v)
				if err != nil {
					t.Fatal(err)
				}
				return *m.Data[0]["note"]
			},
		})},
		{ProtocolDebezium, true, fixed("", largeDecoder{
			rows: func(t *testing.T, r *kgo.Record) []standIn {
				d, err := debezium.Decode(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				return []standIn{{id: string(d.Payload.After["id"]), onlyKey: d.Payload.OnlyHandleKey, claimCheck: d.Payload.ClaimCheckLocation}}
			},
			stored: func(t *testing.T, v []byte) string {
				d, err := debezium.Decode(v)
				if err != nil {
					t.Fatal(err)
				}
				return jsonString(t, d.Payload.After["note"])
			},
		})},
		{ProtocolSimple, true, fixed("", largeDecoder{
			rows: func(t *testing.T, r *kgo.Record) []standIn {
				m, err := simple.Decode(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				return []standIn{{id: *m.Data["id"], onlyKey: m.HandleKeyOnly, claimCheck: m.ClaimCheckLocation}}
			},
			stored: func(t *testing.T, v []byte) string {
				m, err := simple.Decode(v)
				if err != nil {
					t.Fatal(err)
				}
				return *m.Data["note"]
			},
		})},
		{ProtocolAvro, false, func(t *testing.T) (string, largeDecoder) {
			reg := avrotest.Start(t)
			sc := usersSchema("shop", "blobs")
			dec := avro.NewDecoder(avro.Options{EnableTiDBExtension: true}, avro.NewRegistry(reg.URL, nil))
			client := avro.NewRegistry(reg.URL, nil)
			return "enable-tidb-extension=true&schema-registry=" + reg.URL, largeDecoder{
				rows: func(t *testing.T, r *kgo.Record) []standIn {
					ctx := testCtx(t)
					k, err := dec.DecodeKey(ctx, sc, r.Key)
					if err != nil {
						t.Fatal(err)
					}
					fields, err := dec.DecodeFields(ctx, r.Value)
					if err != nil {
						t.Fatal(err)
					}
					// Avro marks a handle-key-only value by its schema,
					// which holds the key's fields only.
					text, err := client.SchemaText(ctx, int32(binary.BigEndian.Uint32(r.Value[1:5])))
					if err != nil {
						t.Fatal(err)
					}
					_, hasNote := fields["note"]
					only := strings.Contains(text, "_handle_key_only") && !hasNote && fields["id"].I == k.Image[0].I
					return []standIn{{id: fmt.Sprint(k.Image[0].I), onlyKey: only}}
				},
			}
		}},
	}
}

// largeParams are the URI parameters of the protocol's sink with the
// given large-message parameters, and its decoder.
func largeParams(t *testing.T, lp largeProtocol, params string) (string, largeDecoder) {
	t.Helper()
	pp, dec := lp.setup(t)
	return strings.Trim("protocol="+lp.protocol+"&"+pp+"&"+params, "&"), dec
}

func TestLargeRowWithNoneFailsNamingTheTableTheSizeAndTheLimit(t *testing.T) {
	for _, lp := range largeProtocols() {
		t.Run(lp.protocol, func(t *testing.T) {
			params, _ := largeParams(t, lp, "")
			c := startBroker(t)
			uri := brokerURI(c, "big", params)
			s := openSink(t, uri)
			sc := usersSchema("shop", "blobs")
			ts := openTable(t, s, sc.Table)
			ctx := testCtx(t)
			row := bigRow(sc, 100)
			// The size a consumer would have received: the message's key
			// and value as the protocol encodes them, framed for
			// open-protocol.
			cfg, err := ParseURI(uri)
			if err != nil {
				t.Fatal(err)
			}
			p, err := newProtocol(cfg)
			if err != nil {
				t.Fatal(err)
			}
			k, v, err := p.encodeRow(ctx, "big", row, rowOpts{})
			if err != nil {
				t.Fatal(err)
			}
			if lp.protocol == ProtocolOpen {
				k, v = open.Frame([][]byte{k}, [][]byte{v})
			}
			size := len(k) + len(v)

			err = ts.Write(ctx, []*model.Txn{{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{row}}})
			if err == nil {
				err = ts.Flush(ctx, 100)
			}
			if err == nil {
				t.Fatal("a 12 MiB row with max-message-bytes 10 MiB was written")
			}
			for _, want := range []string{"table shop.blobs", fmt.Sprintf("a message of %d bytes", size), "max-message-bytes=10485760"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			// Restarting the table would meet the same row again: the error
			// says so, and the changefeed fails instead of retrying forever.
			if !sink.IsUnretryable(err) {
				t.Errorf("the oversize error %v is not marked unretryable", err)
			}
			// The error sticks: a later small row must not be written after
			// a gap.
			if err := ts.Write(ctx, []*model.Txn{{CommitTs: 110, StartTs: 109, Rows: []*model.RowChange{userRow(sc, model.OpInsert, 110, 8, 1, "")}}}); err == nil {
				t.Fatal("a write after the failed row succeeded")
			}
			if n := sumCounts(endOffsets(t, c, "big")); n != 0 {
				t.Fatalf("%d messages reached the topic", n)
			}
		})
	}
}

func sumCounts(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func TestLargeRowWithHandleKeyOnlySendsOnlyItsKey(t *testing.T) {
	for _, lp := range largeProtocols() {
		t.Run(lp.protocol, func(t *testing.T) {
			params, dec := largeParams(t, lp, "large-message-handle-option=handle-key-only")
			c := startBroker(t)
			s := openSink(t, brokerURI(c, "big", params))
			sc := usersSchema("shop", "blobs")
			ts := openTable(t, s, sc.Table)
			ctx := testCtx(t)
			small := userRow(sc, model.OpInsert, 100, 6, 1, "small")
			if err := ts.Write(ctx, []*model.Txn{{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{small, bigRow(sc, 100)}}}); err != nil {
				t.Fatal(err)
			}
			if err := ts.Flush(ctx, 100); err != nil {
				t.Fatal(err)
			}
			rows, size := dec.standIns(t, consume(t, c, "big"))
			if len(rows) != 2 {
				t.Fatalf("%d rows, want 2", len(rows))
			}
			if rows[0] != (standIn{id: "6"}) {
				t.Errorf("the small row came as %+v, want all of row 6", rows[0])
			}
			if rows[1] != (standIn{id: "7", onlyKey: true}) {
				t.Errorf("the large row came as %+v, want row 7's handle key only", rows[1])
			}
			if size > 64<<10 {
				t.Errorf("the messages are %d bytes: the large row's stand-in carries more than the key", size)
			}
		})
	}
}

func TestLargeRowWithClaimCheckStoresTheFullValue(t *testing.T) {
	for _, lp := range largeProtocols() {
		if !lp.claimCheck {
			continue
		}
		t.Run(lp.protocol, func(t *testing.T) {
			dir := t.TempDir()
			params, dec := largeParams(t, lp, "large-message-handle-option=claim-check&claim-check-storage-uri=file://"+dir)
			c := startBroker(t)
			s := openSink(t, brokerURI(c, "big", params))
			sc := usersSchema("shop", "blobs")
			ctx := testCtx(t)
			big := &model.Txn{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{bigRow(sc, 100)}}
			// The row twice, as after a restart from an older checkpoint:
			// the second claim rewrites the first's file.
			for i := 0; i < 2; i++ {
				ts := openTable(t, s, sc.Table)
				if err := ts.Write(ctx, []*model.Txn{big}); err != nil {
					t.Fatal(err)
				}
				if err := ts.Flush(ctx, 100); err != nil {
					t.Fatal(err)
				}
				ts.Close()
			}
			rows, _ := dec.standIns(t, consume(t, c, "big"))
			if len(rows) != 2 {
				t.Fatalf("%d rows, want 2", len(rows))
			}
			got := rows[0]
			if got.id != "7" || !got.onlyKey || got.claimCheck == "" {
				t.Fatalf("the large row came as %+v, want row 7's handle key and a claim check", got)
			}
			if rows[1] != got {
				t.Errorf("the replayed row came as %+v, want %+v", rows[1], got)
			}
			u, err := url.Parse(got.claimCheck)
			if err != nil || u.Scheme != "file" || !strings.HasPrefix(u.Path, dir+"/") {
				t.Fatalf("claim-check location %q is not a file under %s", got.claimCheck, dir)
			}
			full, err := os.ReadFile(u.Path)
			if err != nil {
				t.Fatalf("reading the claimed value: %v", err)
			}
			if note := dec.stored(t, full); len(note) != bigNote || strings.Trim(note, "x") != "" {
				t.Fatalf("the stored value's note has %d bytes, want the 12 MiB of x", len(note))
			}
			var files []string
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
			if !slices.Equal(files, []string{u.Path}) {
				t.Errorf("claim-check storage holds %v, want only %s", files, u.Path)
			}
		})
	}
}

// Avro has no claim-check stand-in: the sink refuses the combination when
// it reads the URI, before contacting anything, and says what to use.
func TestAvroRefusesClaimCheck(t *testing.T) {
	c := startBroker(t)
	reg := avrotest.Start(t)
	err := openFails(t, brokerURI(c, "big", "protocol=avro&schema-registry="+reg.URL+"&large-message-handle-option=claim-check&claim-check-storage-uri=file://"+t.TempDir()))
	if want := "protocol=avro does not support large-message-handle-option=claim-check (use handle-key-only)"; !strings.Contains(err.Error(), want) {
		t.Fatalf("got %q, want it to contain %q", err, want)
	}
}

func allOpenEvents(t *testing.T, recs map[int32][]*kgo.Record) []open.Event {
	t.Helper()
	var ps []int32
	for p := range recs {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	var out []open.Event
	evs := openEvents(t, recs)
	for _, p := range ps {
		out = append(out, evs[p]...)
	}
	return out
}
