package model

import (
	"fmt"
	"strings"
)

// Partition rules of a DispatchRule, as TiCDC spells them.
const (
	// PartitionDefault is the table rule: every row of a table goes to one
	// partition, so a consumer sees the table's rows in commit order.
	PartitionDefault    = "default"
	PartitionTs         = "ts"
	PartitionIndexValue = "index-value"
	PartitionTable      = "table"
	PartitionColumns    = "columns"
)

// DispatchRule routes the rows of the tables its matcher selects to a topic
// and a partition; it is TiCDC's `[sink] dispatchers` entry. In a changefeed
// config file the rules sit under [sink], as in TiCDC:
//
//	[sink]
//	dispatchers = [
//	  {matcher = ["shop.*"], topic = "{schema}_{table}", partition = "index-value"},
//	  {matcher = ["log.*"], partition = "columns", columns = ["host", "day"]},
//	]
//
// The first rule whose matcher selects a table applies to it; a table no
// rule selects goes to the sink URI's topic, partitioned by table.
type DispatchRule struct {
	// Matcher uses the filter's rule syntax ("schema.table" with * and ?,
	// a leading ! excludes; the last matching pattern decides).
	Matcher []string `json:"matcher" toml:"matcher"`
	// Topic is a topic expression: literal topic characters and the
	// placeholders {schema} and {table}. Empty means the sink URI's topic.
	Topic string `json:"topic,omitempty" toml:"topic"`
	// Partition is default, ts, index-value, table or columns; empty means
	// default.
	Partition string `json:"partition,omitempty" toml:"partition"`
	// Index names the index whose values index-value hashes; empty means
	// the table's handle key.
	Index string `json:"index,omitempty" toml:"index"`
	// Columns are the columns the columns rule hashes.
	Columns []string `json:"columns,omitempty" toml:"columns"`
}

// Validate checks a rule's shape. The matcher patterns' syntax is the
// filter package's to check (filter.ValidateConfig does both).
func (r DispatchRule) Validate() error {
	if len(r.Matcher) == 0 {
		return fmt.Errorf("matcher is empty: list the tables the rule applies to, for example matcher = [\"db.*\"]")
	}
	for _, m := range r.Matcher {
		if strings.TrimSpace(m) == "" {
			return fmt.Errorf("matcher %q has an empty pattern", r.Matcher)
		}
	}
	if err := ValidateTopicExpr(r.Topic); err != nil {
		return err
	}
	switch r.Partition {
	case "", PartitionDefault, PartitionTs, PartitionTable:
		if r.Index != "" {
			return fmt.Errorf("index %q is only used with partition = %q, not %q", r.Index, PartitionIndexValue, r.partition())
		}
		if len(r.Columns) != 0 {
			return fmt.Errorf("columns are only used with partition = %q, not %q", PartitionColumns, r.partition())
		}
	case PartitionIndexValue:
		if len(r.Columns) != 0 {
			return fmt.Errorf("columns are only used with partition = %q, not %q", PartitionColumns, r.Partition)
		}
	case PartitionColumns:
		if len(r.Columns) == 0 {
			return fmt.Errorf("partition = %q needs columns = [...]", PartitionColumns)
		}
		if r.Index != "" {
			return fmt.Errorf("index %q is only used with partition = %q, not %q", r.Index, PartitionIndexValue, r.Partition)
		}
		for _, c := range r.Columns {
			if strings.TrimSpace(c) == "" {
				return fmt.Errorf("columns %q has an empty column name", r.Columns)
			}
		}
	default:
		return fmt.Errorf("unknown partition rule %q (known: default, ts, index-value, table, columns)", r.Partition)
	}
	return nil
}

func (r DispatchRule) partition() string {
	if r.Partition == "" {
		return PartitionDefault
	}
	return r.Partition
}

// ValidateDispatchRules checks every rule, naming the one that is wrong.
func ValidateDispatchRules(rules []DispatchRule) error {
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("dispatcher %d (matcher %q): %w", i+1, r.Matcher, err)
		}
	}
	return nil
}

// ValidateTopicExpr checks a topic expression: Kafka's topic characters
// (letters, digits, '.', '_', '-') and the placeholders {schema} and
// {table}. Schema and table names are sanitised into topic characters when
// the expression is rendered, so any table can be routed.
func ValidateTopicExpr(expr string) error {
	rest := expr
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		lit := rest
		if i >= 0 {
			lit = rest[:i]
		}
		for _, c := range lit {
			if !IsTopicChar(c) {
				return fmt.Errorf("topic expression %q: character %q is not allowed in a Kafka topic (letters, digits, '.', '_', '-', and the placeholders {schema} and {table})", expr, c)
			}
		}
		if i < 0 {
			break
		}
		rest = rest[i:]
		switch {
		case strings.HasPrefix(rest, "{schema}"):
			rest = rest[len("{schema}"):]
		case strings.HasPrefix(rest, "{table}"):
			rest = rest[len("{table}"):]
		default:
			end := strings.IndexByte(rest, '}')
			ph := rest
			if end >= 0 {
				ph = rest[:end+1]
			}
			return fmt.Errorf("topic expression %q: unknown placeholder %q (known: {schema}, {table})", expr, ph)
		}
	}
	if len(expr) > 249 {
		return fmt.Errorf("topic expression %q: longer than Kafka's 249-character topic limit", expr)
	}
	return nil
}

// IsTopicChar reports the characters Kafka allows in a topic name.
func IsTopicChar(c rune) bool {
	return c == '.' || c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}
