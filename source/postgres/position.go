package postgres

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/raftcdc/raftcdc/model"
)

// position is the stream's native resume position, stored by the owner
// with the changefeed checkpoint and handed back in StreamOptions.Position.
// It is everything the stream needs to continue exactly as an unbroken run
// would have: where in the WAL, the ts chain's last value, which table
// copies are still owed, and the column signature of every table (so that a
// schema change is reported as DDL exactly once, whichever capture resumes).
type position struct {
	V int `json:"v"`
	// LSN is where streaming resumes: the end of the last transaction the
	// position covers, or the slot's consistent point.
	LSN pglogrepl.LSN `json:"-"`
	// Ts is the ts chain's value: the ts of the last transaction covered.
	Ts model.Ts `json:"ts"`
	// Copy lists the tables (relation OIDs) whose copy has not yet been
	// delivered; CopyAll says every table of the changefeed (the initial
	// snapshot has not completed).
	CopyAll bool     `json:"copy_all,omitempty"`
	Copy    []uint32 `json:"copy,omitempty"`
	// Cols maps relation OID to its column signature (see signature).
	Cols map[uint32]string `json:"cols,omitempty"`
	// Slot is the slot's name, so that a position is never used with
	// another slot.
	Slot string `json:"slot"`
}

const positionVersion = 1

type positionJSON struct {
	position
	LSN string `json:"lsn"`
}

func (p *position) encode() string {
	cp := *p
	cp.V = positionVersion
	sort.Slice(cp.Copy, func(i, j int) bool { return cp.Copy[i] < cp.Copy[j] })
	b, err := json.Marshal(positionJSON{position: cp, LSN: p.LSN.String()})
	if err != nil { // cannot happen for these field types
		panic(err)
	}
	return string(b)
}

func decodePosition(s string) (*position, error) {
	var pj positionJSON
	if err := json.Unmarshal([]byte(s), &pj); err != nil {
		return nil, fmt.Errorf("postgres stream position %q does not parse: %w", truncate([]byte(s)), err)
	}
	if pj.V != positionVersion {
		return nil, fmt.Errorf("postgres stream position has version %d; this build reads version %d", pj.V, positionVersion)
	}
	lsn, err := pglogrepl.ParseLSN(pj.LSN)
	if err != nil {
		return nil, fmt.Errorf("postgres stream position: LSN %q: %w", pj.LSN, err)
	}
	p := pj.position
	p.LSN = lsn
	if p.Cols == nil {
		p.Cols = map[uint32]string{}
	}
	return &p, nil
}

func (p *position) clone() *position {
	cp := *p
	cp.Copy = append([]uint32(nil), p.Copy...)
	cp.Cols = make(map[uint32]string, len(p.Cols))
	for k, v := range p.Cols {
		cp.Cols[k] = v
	}
	return &cp
}

// nextTs is the ts chain: a transaction's ts is its commit time in TSO
// form, but at least two above the previous transaction's. It depends only
// on the previous value and the transaction's commit time, both carried by
// the WAL and the position, so replaying from any stored position gives
// every transaction the ts it had before. Commit times that go backwards
// in LSN order (they are taken before the commit record is inserted, so
// concurrent commits can land in the WAL out of time order) are lifted
// above their predecessor. The gap of two leaves prev+1 free for a table
// copy delivered between two transactions, which therefore never shifts
// the ts of anything after it.
func nextTs(prev model.Ts, commit time.Time) model.Ts {
	ts := model.TsFromTime(commit)
	if ts < prev+2 {
		ts = prev + 2
	}
	return ts
}

// signature is a table's column list as the stream compares it: names,
// type OIDs and typmods in order.
func signature(cols []relCol) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(c.Name))
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(uint64(c.TypeOID), 10))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(int64(c.Typmod), 10))
	}
	return b.String()
}

// parseSignature is signature's inverse.
func parseSignature(s string) ([]relCol, error) {
	var out []relCol
	for len(s) > 0 {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return nil, fmt.Errorf("column signature %q: %w", s, err)
		}
		name, _ := strconv.Unquote(q)
		s = s[len(q):]
		var rest string
		var fields [2]int64
		for i := range fields {
			if !strings.HasPrefix(s, ":") {
				return nil, fmt.Errorf("column signature: expected ':' after %q", name)
			}
			s = s[1:]
			end := strings.IndexAny(s, ":,")
			if end < 0 {
				end = len(s)
			}
			v, err := strconv.ParseInt(s[:end], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("column signature of %q: %w", name, err)
			}
			fields[i] = v
			s = s[end:]
		}
		rest = strings.TrimPrefix(s, ",")
		out = append(out, relCol{Name: name, TypeOID: uint32(fields[0]), Typmod: int32(fields[1])})
		s = rest
	}
	return out, nil
}
