package filter

import (
	"strings"
	"testing"

	"github.com/raftcdc/raftcdc/model"
)

func tn(s string) model.TableName {
	schema, table, _ := strings.Cut(s, ".")
	return model.TableName{Schema: schema, Table: table}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		name          string
		rules         []string
		caseSensitive bool
		match, skip   []string
	}{
		{"no rules match everything", nil, false, []string{"a.b", "mysql.user"}, nil},
		{"exact", []string{"shop.orders"}, false, []string{"shop.orders", "SHOP.Orders"}, []string{"shop.order", "shop.orders2", "shops.orders"}},
		{"case sensitive", []string{"Shop.Orders"}, true, []string{"Shop.Orders"}, []string{"shop.orders", "SHOP.ORDERS"}},
		{"case sensitive wildcard", []string{"s*.O?"}, true, []string{"s.O1", "shop.Ox"}, []string{"S.O1", "s.o1"}},
		{"star", []string{"shop.*"}, false, []string{"shop.a", "shop.orders", "shop.x"}, []string{"shop2.a", "sho.a"}},
		{"star matches empty and middle", []string{"*.t*1"}, false, []string{"a.t1", "b.t0001", "c.tx1y1"}, []string{"a.t10", "a.x1"}},
		{"question mark is one character", []string{"db.t????"}, false, []string{"db.t0001", "db.tabcd"}, []string{"db.t001", "db.t00001"}},
		{"non-matching is excluded", []string{"a.*"}, false, []string{"a.x"}, []string{"b.x"}},
		{"exclusion after inclusion", []string{"*.*", "!mysql.*", "!test.tmp_*"}, false,
			[]string{"shop.orders", "test.real", "Test.Tmp"}, []string{"mysql.user", "MySQL.db", "test.tmp_1", "TEST.TMP_x"}},
		{"last matching rule wins", []string{"!db.t1", "db.*"}, false, []string{"db.t1", "db.t2"}, []string{"other.t1"}},
		{"re-include after exclusion", []string{"db.*", "!db.t*", "db.t0002"}, false, []string{"db.x", "db.t0002"}, []string{"db.t0001"}},
		{"only exclusions match nothing", []string{"!db.t1"}, false, nil, []string{"db.t1", "db.t2", "x.y"}},
		{"spaces around rule", []string{"  ! db.t1 ", " db.* "}, false, []string{"db.t1"}, nil},
		{"unicode", []string{"données.tä*"}, false, []string{"DONNÉES.TÄble"}, []string{"donnees.table"}},
		{"dollar and dash", []string{"a$b.c-d"}, false, []string{"a$b.c-d"}, []string{"ab.cd"}},
		{"backtracking star", []string{"*a*b.*"}, false, []string{"xaxxb.t", "ab.t", "aab.t"}, []string{"ba.t", "xa.t"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New(model.FilterConfig{Rules: tc.rules, CaseSensitive: tc.caseSensitive})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			for _, s := range tc.match {
				if !f.Match(tn(s)) {
					t.Errorf("%s does not match, want match", s)
				}
			}
			for _, s := range tc.skip {
				if f.Match(tn(s)) {
					t.Errorf("%s matches, want no match", s)
				}
			}
		})
	}
}

func TestMalformedRules(t *testing.T) {
	cases := []struct {
		rule string
		want string
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"!", "! must be followed"},
		{"! ", "! must be followed"},
		{"orders", "no dot"},
		{"a.b.c", "more than one dot"},
		{".orders", "schema side"},
		{"db.", "table side"},
		{"!.t", "schema side"},
		{"db.[ab]", `unsupported character '['`},
		{"db.t\\1", `unsupported character '\\'`},
		{"d b.t", `unsupported character ' '`},
		{"`db`.t", "unsupported character '`'"},
		{"db.t/x", `unsupported character '/'`},
		{"!!db.t", `unsupported character '!'`},
	}
	for _, tc := range cases {
		t.Run(tc.rule, func(t *testing.T) {
			_, err := New(model.FilterConfig{Rules: []string{"*.*", tc.rule}})
			if err == nil {
				t.Fatal("New accepted a malformed rule")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "rule 2") {
				t.Errorf("error %q does not say which rule", err)
			}
			if Validate(model.FilterConfig{Rules: []string{tc.rule}}) == nil {
				t.Error("Validate accepted a malformed rule")
			}
		})
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		p, n string
		want bool
	}{
		{"", "", true}, {"", "a", false}, {"*", "", true}, {"**", "abc", true},
		{"a*", "a", true}, {"*a", "ba", true}, {"*a", "ab", false}, {"?", "", false},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"*?", "", false}, {"*?", "x", true},
	}
	for _, tc := range cases {
		if got := glob(tc.p, tc.n); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.p, tc.n, got, tc.want)
		}
	}
}

func TestMatchSchema(t *testing.T) {
	f, err := New(model.FilterConfig{Rules: []string{"shop.*", "!shop.tmp_*", "logs.audit", "!old.*", "o*.*"}})
	if err != nil {
		t.Fatal(err)
	}
	for schema, want := range map[string]bool{"shop": true, "SHOP": true, "logs": true, "other": true, "old": true, "nope": false} {
		if got := f.MatchSchema(schema); got != want {
			t.Errorf("MatchSchema(%q) = %v, want %v", schema, got, want)
		}
	}
	f, _ = New(model.FilterConfig{Rules: []string{"*.*", "!old.*"}})
	if f.MatchSchema("old") || !f.MatchSchema("new") {
		t.Error("a schema excluded entirely by the last rule about it must not match")
	}
}
