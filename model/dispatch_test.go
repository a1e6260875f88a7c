package model

import (
	"strings"
	"testing"
)

func TestDispatchRuleValidate(t *testing.T) {
	good := []DispatchRule{
		{Matcher: []string{"a.*"}},
		{Matcher: []string{"a.*"}, Topic: "cdc.{schema}_{table}-v1", Partition: PartitionTs},
		{Matcher: []string{"a.*"}, Topic: "static", Partition: PartitionIndexValue, Index: "uk"},
		{Matcher: []string{"a.*"}, Partition: PartitionColumns, Columns: []string{"c1"}},
		{Matcher: []string{"a.*"}, Partition: PartitionTable},
	}
	for _, r := range good {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := []struct {
		r    DispatchRule
		want string
	}{
		{DispatchRule{}, "matcher is empty"},
		{DispatchRule{Matcher: []string{" "}}, "empty pattern"},
		{DispatchRule{Matcher: []string{"a.*"}, Topic: "{schema"}, `unknown placeholder "{schema"`},
		{DispatchRule{Matcher: []string{"a.*"}, Topic: "x}"}, `unknown placeholder "}"`},
		{DispatchRule{Matcher: []string{"a.*"}, Topic: "t/x"}, `character '/'`},
		{DispatchRule{Matcher: []string{"a.*"}, Topic: strings.Repeat("t", 250)}, "249-character"},
		{DispatchRule{Matcher: []string{"a.*"}, Partition: "hash"}, `unknown partition rule "hash"`},
		{DispatchRule{Matcher: []string{"a.*"}, Columns: []string{"c"}}, `columns are only used with partition = "columns", not "default"`},
		{DispatchRule{Matcher: []string{"a.*"}, Partition: PartitionColumns, Columns: []string{""}}, "empty column name"},
		{DispatchRule{Matcher: []string{"a.*"}, Partition: PartitionColumns, Columns: []string{"c"}, Index: "i"}, `index "i" is only used`},
	}
	for _, c := range bad {
		err := c.r.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.r, err, c.want)
		}
	}
	err := ValidateDispatchRules([]DispatchRule{{Matcher: []string{"a.*"}}, {Matcher: []string{"b.*"}, Partition: "x"}})
	if err == nil || !strings.HasPrefix(err.Error(), `dispatcher 2 (matcher ["b.*"]): unknown partition rule`) {
		t.Errorf("rule list: %v", err)
	}
}
