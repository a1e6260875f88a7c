package tidb

import (
	"context"
	"errors"

	"github.com/pingcap/tidb/pkg/kv"
	tikverr "github.com/tikv/client-go/v2/error"
	"github.com/tikv/client-go/v2/txnkv/txnsnapshot"
)

// snapshot lets TiDB's meta reader (pkg/meta) read TiDB's meta keys
// through client-go's snapshot at a ts: the read the first schema of a
// subscription comes from, as TiCDC does it.
type snapshot struct {
	s *txnsnapshot.KVSnapshot
}

// clientIter is client-go's iterator (its type is internal to client-go).
type clientIter interface {
	Valid() bool
	Key() []byte
	Value() []byte
	Next() error
	Close()
}

type iter struct{ it clientIter }

func (i iter) Valid() bool   { return i.it.Valid() }
func (i iter) Key() kv.Key   { return i.it.Key() }
func (i iter) Value() []byte { return i.it.Value() }
func (i iter) Next() error   { return i.it.Next() }
func (i iter) Close()        { i.it.Close() }

func (s snapshot) Get(ctx context.Context, k kv.Key) ([]byte, error) {
	v, err := s.s.Get(ctx, k)
	if tikverr.IsErrNotFound(err) {
		return nil, kv.ErrNotExist
	}
	return v, err
}

func (s snapshot) BatchGet(ctx context.Context, keys []kv.Key) (map[string][]byte, error) {
	raw := make([][]byte, len(keys))
	for i, k := range keys {
		raw[i] = k
	}
	return s.s.BatchGet(ctx, raw)
}

func (s snapshot) Iter(k kv.Key, upper kv.Key) (kv.Iterator, error) {
	it, err := s.s.Iter(k, upper)
	if err != nil {
		return nil, err
	}
	return iter{it}, nil
}

func (s snapshot) IterReverse(k kv.Key, lower kv.Key) (kv.Iterator, error) {
	it, err := s.s.IterReverse(k, lower)
	if err != nil {
		return nil, err
	}
	return iter{it}, nil
}

func (s snapshot) SetOption(int, any) {}

var errNoTable = errors.New("no such table")
