package sqlsink

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/raftcdc/raftcdc/model"
)

// RowKeys appends the conflict-detection hashes of a row: one per primary
// and unique key, of the before image and of the after image, so that two
// transactions conflict when either could see or change a row the other
// touches. A table without a usable handle key contributes a hash of the
// table itself, which serialises its transactions (table-level order).
//
// A key with a NULL value takes part in no conflict (a unique index admits
// any number of NULLs). Text under a collation that is not binary is
// folded (case, accents, trailing spaces) before hashing: two values the
// downstream's unique index treats as equal must conflict, and a fold that
// is too coarse costs only parallelism.
func RowKeys(dst []uint64, r *model.RowChange) []uint64 {
	s := r.Schema
	if s.HandleKey() == nil {
		dst = append(dst, tableHash(s.Table))
	}
	for _, ix := range s.Indexes {
		if !ix.Primary && !ix.Unique {
			continue
		}
		cols := s.KeyColumns(&ix)
		if r.Before != nil {
			if h, ok := keyHash(s, ix.Name, cols, r.Before, nil); ok {
				dst = append(dst, h)
			}
		}
		if r.After != nil {
			if h, ok := keyHash(s, ix.Name, cols, r.After, r.Before); ok {
				dst = append(dst, h)
			}
		}
	}
	return dst
}

func tableHash(t model.TableName) uint64 {
	h := fnv.New64a()
	h.Write([]byte(t.Schema))
	h.Write([]byte{0})
	h.Write([]byte(t.Table))
	h.Write([]byte{0, 'T'})
	return h.Sum64()
}

// keyHash hashes the key columns of img; an unchanged column in an after
// image takes its value from the before image. ok is false when a column
// is NULL or not known.
func keyHash(s *model.TableSchema, index string, cols []int, img, before []model.Value) (uint64, bool) {
	h := fnv.New64a()
	h.Write([]byte(s.Table.Schema))
	h.Write([]byte{0})
	h.Write([]byte(s.Table.Table))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(index)))
	var buf [9]byte
	for _, c := range cols {
		if c < 0 || c >= len(img) {
			return 0, false
		}
		v := img[c]
		if v.IsUnchanged() && before != nil && c < len(before) {
			v = before[c]
		}
		if !v.HasData() {
			return 0, false
		}
		buf[0] = byte(v.Kind)
		h.Write(buf[:1])
		switch v.Kind {
		case model.ValueInt:
			binary.LittleEndian.PutUint64(buf[1:], uint64(v.I))
			h.Write(buf[1:])
		case model.ValueUint:
			binary.LittleEndian.PutUint64(buf[1:], v.Uint())
			h.Write(buf[1:])
		case model.ValueFloat:
			f := v.Float()
			if f == 0 {
				f = 0 // -0 and +0 are one key
			}
			binary.LittleEndian.PutUint64(buf[1:], math.Float64bits(f))
			h.Write(buf[1:])
		case model.ValueString:
			t := s.Columns[c].Type
			if t.IsText() || t.Kind == model.TypeEnum || t.Kind == model.TypeSet {
				if !binaryCollation(t) {
					h.Write([]byte(foldText(v.S)))
					break
				}
			}
			h.Write([]byte(v.S))
		case model.ValueBytes:
			h.Write(v.B)
		}
		h.Write([]byte{0xff})
	}
	return h.Sum64(), true
}

func binaryCollation(t model.ColumnType) bool {
	c := strings.ToLower(t.Collation)
	return strings.HasSuffix(c, "_bin") || c == "binary" || strings.ToLower(t.Charset) == "binary"
}

// foldText maps a string to a form that every common case- and
// accent-insensitive collation considers equal to it: decomposed, without
// combining marks, lower case, without trailing spaces.
func foldText(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return strings.TrimRight(b.String(), " ")
}

// handleKeyHash identifies the row a statement of this kind acts on, for
// keeping two rows with one key out of one multi-row statement. ok is false
// for a table without a usable key.
func handleKeyHash(kind StmtKind, r *model.RowChange) (uint64, bool) {
	s := r.Schema
	ix := s.HandleKey()
	if ix == nil {
		return 0, false
	}
	return keyHash(s, ix.Name, s.KeyColumns(ix), KeyImage(kind, r), r.Before)
}
