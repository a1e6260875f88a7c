package processor

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"unsafe"

	"github.com/raftcdc/raftcdc/model"
)

// The spill run format: one frame per spillRecord, the payload's length
// (4 bytes, little-endian) then the payload; integers are varints, floats 8 bytes little-endian,
// strings and byte strings length-prefixed. A row is its table, schema
// version, start ts, op, a flags byte (spillSnapshot) and its two images. A run file lives only as long
// as the sorter that wrote it, so the format has no version and is free to
// change. It replaced encoding/gob, whose reflection made spilling and
// reading back a sixth of a catching-up node's CPU (bench/RESULTS.md,
// "Replication throughput").

// maxSpillFrame bounds a frame's length as read back, so that a damaged file
// gets an error instead of a huge allocation. A frame holds at most
// spillFragmentRows rows, each far below this.
const maxSpillFrame = 1 << 30

// spillSnapshot is the row flag for model.RowChange.Snapshot; the other
// bits must be zero.
const spillSnapshot = 1 << 0

// appendSpillRecord appends rec's frame to dst.
func appendSpillRecord(dst []byte, rec *spillRecord) []byte {
	at := len(dst)
	p := append(dst, 0, 0, 0, 0) // the length, filled in below
	p = binary.AppendUvarint(p, rec.StartTs)
	p = binary.AppendUvarint(p, rec.CommitTs)
	p = binary.AppendUvarint(p, uint64(len(rec.Rows)))
	for i := range rec.Rows {
		r := &rec.Rows[i]
		p = binary.AppendVarint(p, r.Table)
		p = binary.AppendUvarint(p, r.Version)
		p = binary.AppendUvarint(p, r.StartTs)
		p = appendSpillString(p, string(r.Op))
		var flags byte
		if r.Snapshot {
			flags |= spillSnapshot
		}
		p = append(p, flags)
		p = appendSpillImage(p, r.Before)
		p = appendSpillImage(p, r.After)
	}
	binary.LittleEndian.PutUint32(p[at:], uint32(len(p)-at-4))
	return p
}

func appendSpillString(p []byte, s string) []byte {
	p = binary.AppendUvarint(p, uint64(len(s)))
	return append(p, s...)
}

// appendSpillImage writes len+1 then the values, 0 for a nil image (an
// insert has no before image, which is not the same as an empty one).
func appendSpillImage(p []byte, img []model.Value) []byte {
	if img == nil {
		return append(p, 0)
	}
	p = binary.AppendUvarint(p, uint64(len(img))+1)
	for _, v := range img {
		p = append(p, byte(v.Kind))
		switch v.Kind {
		case model.ValueInt:
			p = binary.AppendVarint(p, v.I)
		case model.ValueUint:
			p = binary.AppendUvarint(p, v.Uint())
		case model.ValueFloat:
			p = binary.LittleEndian.AppendUint64(p, math.Float64bits(v.Float()))
		case model.ValueString:
			p = appendSpillString(p, v.S)
		case model.ValueBytes:
			p = binary.AppendUvarint(p, uint64(len(v.B)))
			p = append(p, v.B...)
		}
	}
	return p
}

// spillReader reads frames back.
type spillReader struct{ r *bufio.Reader }

// next decodes the next frame into rec; io.EOF at a clean end of the file.
func (sr *spillReader) next(rec *spillRecord) error {
	var l [4]byte
	if _, err := io.ReadFull(sr.r, l[:]); err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return fmt.Errorf("reading a frame length: %w", err)
	}
	n := binary.LittleEndian.Uint32(l[:])
	if n > maxSpillFrame {
		return fmt.Errorf("a frame of %d bytes is over the limit of %d: the run is damaged", n, maxSpillFrame)
	}
	// The payload is allocated per frame and never reused: the decoded
	// strings and byte strings point into it.
	p := make([]byte, n)
	if _, err := io.ReadFull(sr.r, p); err != nil {
		return fmt.Errorf("reading a frame of %d bytes: %w", n, err)
	}
	d := spillDecoder{p: p}
	rec.StartTs = d.uvarint()
	rec.CommitTs = d.uvarint()
	rows := d.count(4)
	rec.Rows = make([]spillRow, rows)
	for i := range rec.Rows {
		r := &rec.Rows[i]
		r.Table = d.varint()
		r.Version = d.uvarint()
		r.StartTs = d.uvarint()
		r.Op = model.Op(d.str())
		r.Snapshot = d.flags()&spillSnapshot != 0
		r.Before = d.image()
		r.After = d.image()
	}
	if d.err == nil && len(d.p) != 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.p))
	}
	if d.err != nil {
		return fmt.Errorf("decoding a frame: %w: the run is damaged", d.err)
	}
	return nil
}

// spillDecoder takes a payload apart; the first problem sticks in err and
// every later read returns zero values.
type spillDecoder struct {
	p   []byte
	err error
}

func (d *spillDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated %s", what)
	}
	d.p = nil
}

func (d *spillDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail("unsigned integer")
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *spillDecoder) varint() int64 {
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.p = d.p[n:]
	return v
}

// count reads a length and checks it against what is left, at least
// minBytes per element, so that a damaged length cannot allocate much.
func (d *spillDecoder) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64(len(d.p)/minBytes)+1 {
		d.fail("count")
		return 0
	}
	return int(n)
}

// flags reads a row's flags byte; a bit this build does not write is
// damage.
func (d *spillDecoder) flags() byte {
	if len(d.p) == 0 {
		d.fail("row flags")
		return 0
	}
	f := d.p[0]
	d.p = d.p[1:]
	if f&^spillSnapshot != 0 {
		if d.err == nil {
			d.err = fmt.Errorf("unknown row flags %#x", f)
		}
		d.p = nil
		return 0
	}
	return f
}

func (d *spillDecoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.p)) {
		d.fail("string")
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}

func (d *spillDecoder) str() string {
	b := d.bytes()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (d *spillDecoder) image() []model.Value {
	n := d.count(1)
	if n == 0 || d.err != nil {
		return nil
	}
	img := make([]model.Value, n-1)
	for i := range img {
		if len(d.p) == 0 {
			d.fail("value")
			return nil
		}
		k := model.ValueKind(d.p[0])
		d.p = d.p[1:]
		v := model.Value{Kind: k}
		switch k {
		case model.ValueMissing, model.ValueNull, model.ValueUnchanged:
		case model.ValueInt:
			v.I = d.varint()
		case model.ValueUint:
			v.I = int64(d.uvarint())
		case model.ValueFloat:
			if len(d.p) < 8 {
				d.fail("float")
				return nil
			}
			v.I = int64(binary.LittleEndian.Uint64(d.p))
			d.p = d.p[8:]
		case model.ValueString:
			v.S = d.str()
		case model.ValueBytes:
			v.B = d.bytes()
		default:
			if d.err == nil {
				d.err = fmt.Errorf("unknown value kind %d", k)
			}
			d.p = nil
			return nil
		}
		img[i] = v
	}
	return img
}
