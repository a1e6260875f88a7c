package datagen

import (
	"strings"
	"testing"
	"time"
)

func TestParseURIValid(t *testing.T) {
	cases := []struct {
		uri   string
		check func(Config) bool
	}{
		{"datagen://", func(c Config) bool { return c == DefaultConfig() }},
		{"datagen://?", func(c Config) bool { return c == DefaultConfig() }},
		{"datagen:///", func(c Config) bool { return c == DefaultConfig() }},
		{"datagen://?tables=12&rate=100", func(c Config) bool { return c.Tables == 12 && c.RateNum == 100 && c.RateDen == 1 }},
		{"datagen://?rate=0.5", func(c Config) bool { return c.RateNum == 1 && c.RateDen == 2 }},
		{"datagen://?rate=2.250", func(c Config) bool { return c.RateNum == 9 && c.RateDen == 4 }},
		{"datagen://?rate=.25", func(c Config) bool { return c.RateNum == 1 && c.RateDen == 4 }},
		{"datagen://?rate=100000", func(c Config) bool { return c.RateNum == 100000 }},
		{"datagen://?rate=0.000001", func(c Config) bool { return c.RateNum == 1 && c.RateDen == 1000000 }},
		{"datagen://?tables=100000", func(c Config) bool { return c.Tables == 100000 }},
		{"datagen://?row-size=0&keys=1&seed=18446744073709551615", func(c Config) bool {
			return c.RowSize == 0 && c.Keys == 1 && c.Seed == 18446744073709551615
		}},
		{"datagen://?mix=1:0:0&schema=shop_1", func(c Config) bool { return c.Mix == [3]uint64{1, 0, 0} && c.Schema == "shop_1" }},
		{"datagen://?gc-life=1s&resolve-interval=1ms", func(c Config) bool {
			return c.GCLife == time.Second && c.ResolveInterval == time.Millisecond
		}},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			cfg, err := ParseURI(tc.uri)
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			if !tc.check(cfg) {
				t.Fatalf("unexpected config %+v", cfg)
			}
			// The canonical form must parse back to the same configuration.
			again, err := ParseURI(cfg.URI())
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", cfg.URI(), err)
			}
			if again != cfg {
				t.Fatalf("round trip through %q: got %+v, want %+v", cfg.URI(), again, cfg)
			}
		})
	}
}

func TestParseURIInvalid(t *testing.T) {
	cases := []struct {
		uri  string
		want []string // substrings the error must contain
	}{
		{"file:///tmp", []string{`scheme must be "datagen"`}},
		{"datagen://host?tables=1", []string{"only query parameters"}},
		{"datagen://?tables=0", []string{`"tables"`, "1 to 100000"}},
		{"datagen://?tables=100001", []string{`"tables"`}},
		{"datagen://?tables=abc", []string{`"tables"`, `"abc"`}},
		{"datagen://?rate=0", []string{`"rate"`, "0 < rate <= 100000"}},
		{"datagen://?rate=100000.5", []string{`"rate"`}},
		{"datagen://?rate=-1", []string{`"rate"`}},
		{"datagen://?rate=1e3", []string{`"rate"`}},
		{"datagen://?rate=0.0000001", []string{`"rate"`, "6 decimals"}},
		{"datagen://?rate=1.", []string{`"rate"`}},
		{"datagen://?rate=", []string{`"rate"`}},
		{"datagen://?row-size=-1", []string{`"row-size"`}},
		{"datagen://?row-size=1048577", []string{`"row-size"`}},
		{"datagen://?mix=1:2", []string{`"mix"`, "insert:update:delete"}},
		{"datagen://?mix=0:0:0", []string{`"mix"`, "positive sum"}},
		{"datagen://?mix=a:1:1", []string{`"mix"`}},
		{"datagen://?keys=0", []string{`"keys"`}},
		{"datagen://?seed=-3", []string{`"seed"`}},
		{"datagen://?schema=", []string{`"schema"`}},
		{"datagen://?schema=a.b", []string{`"schema"`}},
		{"datagen://?gc-life=0s", []string{`"gc-life"`}},
		{"datagen://?gc-life=ten", []string{`"gc-life"`}},
		{"datagen://?resolve-interval=0s", []string{`"resolve-interval"`}},
		{"datagen://?resolve-interval=2m", []string{`"resolve-interval"`}},
		{"datagen://?tabels=3", []string{`unknown parameter "tabels"`, "tables"}},
		{"datagen://?tables=1&tables=2", []string{`"tables"`, "2 times"}},
		{"datagen://?%zz", []string{"parse"}},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			_, err := ParseURI(tc.uri)
			if err == nil {
				t.Fatal("ParseURI succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
