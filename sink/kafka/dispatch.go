package kafka

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/model"
)

// router decides the topic of a table and the partition of a row, from the
// changefeed's dispatcher rules (TiCDC's [sink] dispatchers).
type router struct {
	defaultTopic string
	rules        []compiledRule
}

type compiledRule struct {
	model.DispatchRule
	match *filter.Filter
}

func newRouter(defaultTopic string, rules []model.DispatchRule, caseSensitive bool) (*router, error) {
	if err := model.ValidateDispatchRules(rules); err != nil {
		return nil, err
	}
	r := &router{defaultTopic: defaultTopic}
	for i, d := range rules {
		m, err := filter.NewMatcher(d.Matcher, caseSensitive)
		if err != nil {
			return nil, fmt.Errorf("dispatcher %d: %w", i+1, err)
		}
		r.rules = append(r.rules, compiledRule{DispatchRule: d, match: m})
	}
	return r, nil
}

// tableRoute is where one table's rows go.
type tableRoute struct {
	topic     string
	partition string // one of model.Partition*
	index     string
	columns   []string
}

func (r *router) route(t model.TableName) tableRoute {
	for _, d := range r.rules {
		if !d.match.Match(t) {
			continue
		}
		rt := tableRoute{topic: r.defaultTopic, partition: d.Partition, index: d.Index, columns: d.Columns}
		if d.Topic != "" {
			rt.topic = renderTopic(d.Topic, t)
		}
		if rt.partition == "" {
			rt.partition = model.PartitionDefault
		}
		return rt
	}
	return tableRoute{topic: r.defaultTopic, partition: model.PartitionDefault}
}

// renderTopic fills a topic expression. Characters Kafka does not allow in
// a topic become '_', so every table name gives a valid topic.
func renderTopic(expr string, t model.TableName) string {
	s := strings.NewReplacer("{schema}", sanitizeTopic(t.Schema), "{table}", sanitizeTopic(t.Table)).Replace(expr)
	if len(s) > 249 {
		s = s[:249]
	}
	return s
}

func sanitizeTopic(s string) string {
	return strings.Map(func(r rune) rune {
		if model.IsTopicChar(r) {
			return r
		}
		return '_'
	}, s)
}

// partitioner computes a row's partition for one table.
type partitioner struct {
	kind string
	// cols are the column positions hashed by index-value and columns, for
	// the schema version in schemaVer; they are recomputed when a row
	// carries a new version.
	schemaVer uint64
	cols      []int
	rt        tableRoute
	table     model.TableName
}

func newPartitioner(rt tableRoute, table model.TableName) *partitioner {
	return &partitioner{kind: rt.partition, rt: rt, table: table, schemaVer: ^uint64(0)}
}

// partition returns the row's partition among n. Rows of one key go to one
// partition (index-value, columns), so their order holds for a consumer.
func (p *partitioner) partition(row *model.RowChange, n int32) (int32, error) {
	if n <= 1 {
		return 0, nil
	}
	switch p.kind {
	case model.PartitionTs:
		return int32(row.CommitTs % uint64(n)), nil
	case model.PartitionIndexValue, model.PartitionColumns:
		if err := p.resolve(row.Schema); err != nil {
			return 0, err
		}
		if p.cols == nil { // a keyless table: fall back to the table
			return hashTable(p.table, n), nil
		}
		h := fnv.New64a()
		img := row.Image()
		var lb [8]byte
		for _, i := range p.cols {
			v := img[i]
			t := v.Text()
			binary.BigEndian.PutUint64(lb[:], uint64(len(t)))
			h.Write([]byte{byte(v.Kind)})
			h.Write(lb[:])
			h.Write([]byte(t))
		}
		return partitionOf(h.Sum64(), n), nil
	default: // default and table
		return hashTable(p.table, n), nil
	}
}

func (p *partitioner) resolve(s *model.TableSchema) error {
	if s.Version == p.schemaVer && p.schemaVer != ^uint64(0) {
		return nil
	}
	p.cols = nil
	switch p.kind {
	case model.PartitionIndexValue:
		var ix *model.Index
		if p.rt.index == "" {
			ix = s.HandleKey()
		} else {
			for i := range s.Indexes {
				if strings.EqualFold(s.Indexes[i].Name, p.rt.index) {
					ix = &s.Indexes[i]
				}
			}
			if ix == nil {
				return fmt.Errorf("table %s: dispatcher index %q does not exist in schema version %d", s.Table, p.rt.index, s.Version)
			}
		}
		if ix != nil {
			p.cols = s.KeyColumns(ix)
		}
	case model.PartitionColumns:
		for _, c := range p.rt.columns {
			i := -1
			for j, col := range s.Columns {
				if strings.EqualFold(col.Name, c) {
					i = j
				}
			}
			if i < 0 {
				return fmt.Errorf("table %s: dispatcher column %q does not exist in schema version %d", s.Table, c, s.Version)
			}
			p.cols = append(p.cols, i)
		}
	}
	p.schemaVer = s.Version
	return nil
}

func hashTable(t model.TableName, n int32) int32 {
	h := fnv.New64a()
	h.Write([]byte(t.Schema))
	h.Write([]byte{0})
	h.Write([]byte(t.Table))
	return partitionOf(h.Sum64(), n)
}

// partitionOf maps a hash to one of n partitions. FNV-1a's sum cannot be
// taken modulo n as it is: its multiplications carry bits only upwards, so
// the low k bits of the sum depend only on the low k bits of each input
// byte, and with 2^k partitions values that differ in higher bits of their
// bytes ("user-a", "user-e") all went to one partition; a columns rule
// over (n, note) put six groups in one of four partitions. A
// xorshift-multiply finalizer (splitmix64's) spreads every bit of the sum
// over the low ones.
func partitionOf(h uint64, n int32) int32 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return int32(h % uint64(n))
}
