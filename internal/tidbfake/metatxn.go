package tidbfake

import (
	"bytes"
	"context"
	"sort"

	"github.com/pingcap/kvproto/pkg/kvrpcpb"
	"github.com/pingcap/tidb/pkg/kv"
)

// metaTxn lets TiDB's own meta.Mutator write the fake's meta keys: it is
// the few methods of kv.Transaction that the meta and structure packages
// call, over the MVCC store with a write buffer. Any other method panics
// (the embedded interface is nil), which a test would show at once.
type metaTxn struct {
	kv.Transaction
	snap    *mvccSnapshot
	startTs uint64
	buf     map[string][]byte // nil value = delete
}

func newMetaTxn(m *mvcc, startTs uint64) *metaTxn {
	return &metaTxn{snap: &mvccSnapshot{m: m, ts: ^uint64(0)}, startTs: startTs, buf: map[string][]byte{}}
}

func (t *metaTxn) StartTS() uint64                    { return t.startTs }
func (t *metaTxn) SetOption(int, any)                 {}
func (t *metaTxn) SetDiskFullOpt(kvrpcpb.DiskFullOpt) {}

func (t *metaTxn) Get(ctx context.Context, k kv.Key) ([]byte, error) {
	if v, ok := t.buf[string(k)]; ok {
		if v == nil {
			return nil, kv.ErrNotExist
		}
		return v, nil
	}
	return t.snap.Get(ctx, k)
}

func (t *metaTxn) Set(k kv.Key, v []byte) error {
	t.buf[string(k)] = append([]byte{}, v...)
	return nil
}

func (t *metaTxn) Delete(k kv.Key) error {
	t.buf[string(k)] = nil
	return nil
}

// Iter merges the buffer over the store.
func (t *metaTxn) Iter(k kv.Key, upper kv.Key) (kv.Iterator, error) {
	merged := map[string][]byte{}
	it, _ := t.snap.Iter(k, upper)
	for it.Valid() {
		merged[string(it.Key())] = it.Value()
		_ = it.Next()
	}
	for key, v := range t.buf {
		if bytes.Compare([]byte(key), k) >= 0 && (len(upper) == 0 || bytes.Compare([]byte(key), upper) < 0) {
			merged[key] = v
		}
	}
	out := &sliceIter{}
	for key, v := range merged {
		if v != nil {
			out.pairs = append(out.pairs, kvPair{key: []byte(key), value: v})
		}
	}
	sort.Slice(out.pairs, func(i, j int) bool { return bytes.Compare(out.pairs[i].key, out.pairs[j].key) < 0 })
	return out, nil
}

func (t *metaTxn) IterReverse(k kv.Key, lower kv.Key) (kv.Iterator, error) {
	fwd, _ := t.Iter(lower, k)
	s := fwd.(*sliceIter)
	for i, j := 0, len(s.pairs)-1; i < j; i, j = i+1, j-1 {
		s.pairs[i], s.pairs[j] = s.pairs[j], s.pairs[i]
	}
	return s, nil
}

// mutations are the buffered writes in key order.
func (t *metaTxn) mutations() []mutation {
	out := make([]mutation, 0, len(t.buf))
	for k, v := range t.buf {
		if v == nil {
			out = append(out, mutation{key: []byte(k), del: true})
		} else {
			out = append(out, mutation{key: []byte(k), value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].key, out[j].key) < 0 })
	return out
}

// mvccSnapshot is a kv.Snapshot of the MVCC store at ts (committed data
// only; the caller holds the cluster lock). TiDB's meta.Reader reads the
// fake's own meta keys through it.
type mvccSnapshot struct {
	m  *mvcc
	ts uint64
}

func (s *mvccSnapshot) Get(_ context.Context, k kv.Key) ([]byte, error) {
	e := s.m.get(k)
	if e == nil {
		return nil, kv.ErrNotExist
	}
	v, ok := e.valueAt(s.ts)
	if !ok {
		return nil, kv.ErrNotExist
	}
	return v, nil
}

func (s *mvccSnapshot) BatchGet(ctx context.Context, keys []kv.Key) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, k := range keys {
		if v, err := s.Get(ctx, k); err == nil {
			out[string(k)] = v
		}
	}
	return out, nil
}

func (s *mvccSnapshot) SetOption(int, any) {}

func (s *mvccSnapshot) Iter(k kv.Key, upper kv.Key) (kv.Iterator, error) {
	out := &sliceIter{}
	s.m.ascend(k, upper, func(e *entry) bool {
		if v, ok := e.valueAt(s.ts); ok {
			out.pairs = append(out.pairs, kvPair{key: e.key, value: v})
		}
		return true
	})
	return out, nil
}

func (s *mvccSnapshot) IterReverse(k kv.Key, lower kv.Key) (kv.Iterator, error) {
	out := &sliceIter{}
	s.m.descend(k, lower, func(e *entry) bool {
		if v, ok := e.valueAt(s.ts); ok {
			out.pairs = append(out.pairs, kvPair{key: e.key, value: v})
		}
		return true
	})
	return out, nil
}

type kvPair struct {
	key, value []byte
}

type sliceIter struct {
	pairs []kvPair
	i     int
}

func (it *sliceIter) Valid() bool { return it.i < len(it.pairs) }
func (it *sliceIter) Key() kv.Key { return it.pairs[it.i].key }
func (it *sliceIter) Value() []byte {
	return it.pairs[it.i].value
}
func (it *sliceIter) Next() error { it.i++; return nil }
func (it *sliceIter) Close()      {}
