package datagen

import (
	"context"
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
		{"datagen://?cluster-id=", []string{`"cluster-id"`, "1 to 64"}},
		{"datagen://?cluster-id=a/b", []string{`"cluster-id"`}},
		{"datagen://?cluster-id=" + strings.Repeat("x", 65), []string{`"cluster-id"`}},
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

// The cluster-id names the simulated upstream: by default it is derived
// from the seed (and schema), and a URI that spells the default out is the
// same upstream — and the same canonical URI — as one that leaves it out.
func TestClusterID(t *testing.T) {
	for _, tc := range []struct{ uri, want string }{
		{"datagen://", "datagen-1-datagen"},
		{"datagen://?seed=7", "datagen-7-datagen"},
		{"datagen://?seed=7&schema=shop", "datagen-7-shop"},
		{"datagen://?seed=7&cluster-id=prod-east.1", "prod-east.1"},
	} {
		cfg, err := ParseURI(tc.uri)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.UpstreamID(); got != tc.want {
			t.Errorf("%s: upstream ID %q, want %q", tc.uri, got, tc.want)
		}
		src, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := src.UpstreamID(context.Background()); err != nil || got != tc.want {
			t.Errorf("%s: Source.UpstreamID = %q, %v", tc.uri, got, err)
		}
		src.Close()
	}
	a, _ := ParseURI("datagen://?tables=4&seed=7")
	b, _ := ParseURI("datagen://?cluster-id=datagen-7-datagen&seed=7&tables=4")
	if a.URI() != b.URI() || strings.Contains(a.URI(), "cluster-id") {
		t.Fatalf("spelling the default cluster-id out changes the canonical URI:\n%s\n%s", a.URI(), b.URI())
	}
	c, _ := ParseURI("datagen://?tables=4&seed=7&cluster-id=other")
	if rt, err := ParseURI(c.URI()); err != nil || rt.UpstreamID() != "other" {
		t.Fatalf("an explicit cluster-id does not survive the canonical URI: %v %v", rt, err)
	}
}
