package dashboards

import (
	"fmt"
	"strings"
	"unicode"
)

// The dashboard test needs to know which metrics and labels a PromQL
// expression refers to. Pulling in Prometheus's own parser would add the
// whole Prometheus module to the build for one test, so this is a small
// lexer for the subset a dashboard uses: selectors with matchers, range
// brackets, functions, aggregations with by/without, binary operators,
// numbers, strings and Grafana's $variables.

type tokKind int

const (
	tokIdent tokKind = iota
	tokString
	tokNumber
	tokPunct
	tokVar
	tokRange
)

type token struct {
	kind tokKind
	text string
}

func lex(expr string) ([]token, error) {
	var out []token
	rs := []rune(expr)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsSpace(r):
			i++
		case r == '"' || r == '\'' || r == '`':
			j := i + 1
			for j < len(rs) && rs[j] != r {
				if rs[j] == '\\' && r != '`' {
					j++
				}
				j++
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated string at %d in %q", i, expr)
			}
			out = append(out, token{tokString, string(rs[i+1 : j])})
			i = j + 1
		case r == '[':
			j := i + 1
			for j < len(rs) && rs[j] != ']' {
				j++
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated range at %d in %q", i, expr)
			}
			out = append(out, token{tokRange, string(rs[i+1 : j])})
			i = j + 1
		case r == '$':
			j := i + 1
			if j < len(rs) && rs[j] == '{' {
				for j < len(rs) && rs[j] != '}' {
					j++
				}
				j++
			} else {
				for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '_') {
					j++
				}
			}
			out = append(out, token{tokVar, string(rs[i:j])})
			i = j
		case unicode.IsLetter(r) || r == '_' || r == ':':
			j := i
			for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '_' || rs[j] == ':') {
				j++
			}
			out = append(out, token{tokIdent, string(rs[i:j])})
			i = j
		case unicode.IsDigit(r) || r == '.':
			j := i
			for j < len(rs) && (unicode.IsDigit(rs[j]) || rs[j] == '.' || rs[j] == 'e') {
				j++
			}
			out = append(out, token{tokNumber, string(rs[i:j])})
			i = j
		default:
			two := ""
			if i+1 < len(rs) {
				two = string(rs[i : i+2])
			}
			switch two {
			case "!=", "=~", "!~", "==", "<=", ">=":
				out = append(out, token{tokPunct, two})
				i += 2
				continue
			}
			if !strings.ContainsRune("(){},=+-*/%^<>", r) {
				return nil, fmt.Errorf("unexpected %q at %d in %q", r, i, expr)
			}
			out = append(out, token{tokPunct, string(r)})
			i++
		}
	}
	return out, nil
}

var (
	promAggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true}
	promGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true}
)

// selector is one metric reference with the labels its matchers name.
type selector struct {
	metric string
	labels []string
}

// references lists the selectors of an expression and the labels its
// by/without/on/ignoring/group_* clauses name.
func references(expr string) (sels []selector, grouping []string, err error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, nil, err
	}
	next := func(i int) token {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return token{}
	}
	labelList := func(i int) ([]string, int, error) {
		// toks[i] is "("; reads identifiers up to ")".
		var ls []string
		j := i + 1
		for ; j < len(toks) && toks[j].text != ")"; j++ {
			if toks[j].kind == tokIdent {
				ls = append(ls, toks[j].text)
			} else if toks[j].text != "," {
				return nil, 0, fmt.Errorf("unexpected %q in a label list of %q", toks[j].text, expr)
			}
		}
		if j >= len(toks) {
			return nil, 0, fmt.Errorf("unterminated label list in %q", expr)
		}
		return ls, j, nil
	}
	matchers := func(i int) ([]string, int, error) {
		// toks[i] is "{"; reads label op value [, ...] up to "}".
		var ls []string
		j := i + 1
		for j < len(toks) && toks[j].text != "}" {
			if j+2 >= len(toks) || toks[j].kind != tokIdent || toks[j+1].kind != tokPunct || (toks[j+2].kind != tokString) {
				return nil, 0, fmt.Errorf("malformed matcher at %q in %q", toks[j].text, expr)
			}
			switch toks[j+1].text {
			case "=", "!=", "=~", "!~":
			default:
				return nil, 0, fmt.Errorf("unknown matcher %q in %q", toks[j+1].text, expr)
			}
			ls = append(ls, toks[j].text)
			j += 3
			if j < len(toks) && toks[j].text == "," {
				j++
			}
		}
		if j >= len(toks) {
			return nil, 0, fmt.Errorf("unterminated matchers in %q", expr)
		}
		return ls, j, nil
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == tokPunct && t.text == "{":
			return nil, nil, fmt.Errorf("a selector without a metric name in %q", expr)
		case t.kind != tokIdent:
		case promGrouping[t.text]:
			if next(i).text != "(" {
				continue // group_left without labels
			}
			ls, j, err := labelList(i + 1)
			if err != nil {
				return nil, nil, err
			}
			grouping = append(grouping, ls...)
			i = j
		case promKeywords[t.text]:
		case promAggregations[t.text] || next(i).text == "(":
			// A function or an aggregation: its arguments follow.
		default:
			s := selector{metric: t.text}
			if next(i).text == "{" {
				ls, j, err := matchers(i + 1)
				if err != nil {
					return nil, nil, err
				}
				s.labels, i = ls, j
			}
			sels = append(sels, s)
		}
	}
	return sels, grouping, nil
}
