// Package filter selects tables with TiCDC-style rules.
//
// A rule is "schema.table" where either side may use * (any run of
// characters, including none) and ? (exactly one character). A leading !
// turns the rule into an exclusion. Rules are read in order and the last rule
// that matches a table decides, so a general rule followed by exceptions
// reads naturally:
//
//	*.*
//	!mysql.*
//	!test.tmp_*
//
// With no rules every table matches; with rules, a table no rule matches is
// excluded, as in TiDB's table filter.
package filter

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/raftcdc/raftcdc/model"
)

type rule struct {
	exclude       bool
	schema, table string
}

// Filter is a compiled set of rules. It is immutable and safe for concurrent use.
type Filter struct {
	rules         []rule
	caseSensitive bool
}

// New compiles the rules of cfg, rejecting any that is malformed.
func New(cfg model.FilterConfig) (*Filter, error) {
	f := &Filter{caseSensitive: cfg.CaseSensitive, rules: make([]rule, 0, len(cfg.Rules))}
	for i, text := range cfg.Rules {
		r, err := parseRule(text, cfg.CaseSensitive)
		if err != nil {
			return nil, fmt.Errorf("filter rule %d %q: %w", i+1, text, err)
		}
		f.rules = append(f.rules, r)
	}
	return f, nil
}

// Validate reports whether cfg would compile.
func Validate(cfg model.FilterConfig) error {
	_, err := New(cfg)
	return err
}

// ValidateConfig checks a changefeed config's filter rules and dispatcher
// rules (their shape and their matchers' syntax), naming what is wrong.
func ValidateConfig(cfg model.ChangefeedConfig) error {
	if err := Validate(cfg.Filter); err != nil {
		return err
	}
	if err := model.ValidateDispatchRules(cfg.Dispatchers); err != nil {
		return err
	}
	for i, d := range cfg.Dispatchers {
		if _, err := NewMatcher(d.Matcher, cfg.Filter.CaseSensitive); err != nil {
			return fmt.Errorf("dispatcher %d: %w", i+1, err)
		}
	}
	return nil
}

// NewMatcher compiles a dispatcher's matcher: the filter's rule syntax, with
// errors that say "matcher" rather than "filter".
func NewMatcher(patterns []string, caseSensitive bool) (*Filter, error) {
	f := &Filter{caseSensitive: caseSensitive, rules: make([]rule, 0, len(patterns))}
	for i, text := range patterns {
		r, err := parseRule(text, caseSensitive)
		if err != nil {
			return nil, fmt.Errorf("matcher pattern %d %q: %w", i+1, text, err)
		}
		f.rules = append(f.rules, r)
	}
	return f, nil
}

func parseRule(text string, caseSensitive bool) (rule, error) {
	s := strings.TrimSpace(text)
	var r rule
	if s == "" {
		return r, fmt.Errorf("rule is empty; write schema.table, for example db.*")
	}
	if rest, ok := strings.CutPrefix(s, "!"); ok {
		r.exclude = true
		s = strings.TrimSpace(rest)
		if s == "" {
			return r, fmt.Errorf("! must be followed by schema.table, for example !db.tmp_*")
		}
	}
	schema, table, ok := strings.Cut(s, ".")
	if !ok {
		return r, fmt.Errorf("no dot: write schema.table, for example db.* or *.orders")
	}
	if strings.Contains(table, ".") {
		return r, fmt.Errorf("more than one dot: write schema.table, and neither side may contain a dot")
	}
	if schema == "" {
		return r, fmt.Errorf("the schema side (before the dot) is empty; use * to match any schema")
	}
	if table == "" {
		return r, fmt.Errorf("the table side (after the dot) is empty; use * to match any table")
	}
	for _, side := range []string{schema, table} {
		if err := checkPattern(side); err != nil {
			return r, err
		}
	}
	if !caseSensitive {
		schema, table = strings.ToLower(schema), strings.ToLower(table)
	}
	r.schema, r.table = schema, table
	return r, nil
}

// checkPattern allows what names are made of plus the two wildcards. Character
// classes, escapes and quoting are refused rather than half-supported, so a
// rule never silently means something other than what its author expected.
func checkPattern(p string) error {
	for _, c := range p {
		switch {
		case c == '*' || c == '?' || c == '_' || c == '$' || c == '-':
		case unicode.IsLetter(c) || unicode.IsDigit(c):
		default:
			return fmt.Errorf("unsupported character %q in %q: only letters, digits, _ $ - and the wildcards * and ? are allowed", c, p)
		}
	}
	return nil
}

// Match reports whether the filter selects the table.
func (f *Filter) Match(t model.TableName) bool {
	if len(f.rules) == 0 {
		return true
	}
	schema, table := t.Schema, t.Table
	if !f.caseSensitive {
		schema, table = strings.ToLower(schema), strings.ToLower(table)
	}
	for i := len(f.rules) - 1; i >= 0; i-- {
		r := f.rules[i]
		if glob(r.schema, schema) && glob(r.table, table) {
			return !r.exclude
		}
	}
	return false
}

// glob matches name against a pattern of literal runes, * and ?. It runs in
// O(len(pattern)*len(name)) by remembering only the last star, which is
// enough because a later star can absorb anything an earlier one could.
func glob(pattern, name string) bool {
	p, n := []rune(pattern), []rune(name)
	pi, ni := 0, 0
	star, mark := -1, 0
	for ni < len(n) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == n[ni]):
			pi++
			ni++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ni
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			ni = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// MatchSchema reports whether the filter may select some table of a schema:
// whether an including rule's schema pattern matches it. Schema-level DDL
// (create and drop database) is replicated for such schemas only.
func (f *Filter) MatchSchema(schema string) bool {
	if len(f.rules) == 0 {
		return true
	}
	if !f.caseSensitive {
		schema = strings.ToLower(schema)
	}
	for i := len(f.rules) - 1; i >= 0; i-- {
		r := f.rules[i]
		if !glob(r.schema, schema) {
			continue
		}
		if r.exclude && r.table == "*" {
			// Every table of the schema is excluded by the last rule that
			// speaks about it.
			return false
		}
		if !r.exclude {
			return true
		}
	}
	return false
}
