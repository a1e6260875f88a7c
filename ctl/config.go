package ctl

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/raftcdc/raftcdc/filter"
	"github.com/raftcdc/raftcdc/model"
)

// fileConfig is the changefeed config file. It has its own shape rather than
// model.ChangefeedConfig's so that the file reads like TiCDC's
// (case-sensitive at the top, [filter] rules, [sink] options) while the model
// stays free to change.
type fileConfig struct {
	CaseSensitive bool   `toml:"case-sensitive"`
	GCTTL         string `toml:"gc-ttl"`
	// MemoryQuota is bytes, an integer, as in TiCDC's file.
	MemoryQuota uint64 `toml:"memory-quota"`
	Filter      struct {
		Rules []string `toml:"rules"`
	} `toml:"filter"`
	// Sink holds string options and, under "dispatchers", TiCDC's
	// dispatcher rules; each is decoded by its key.
	Sink map[string]toml.Primitive `toml:"sink"`
}

// ConfigKeys describes the keys a config file may hold, for error messages.
const ConfigKeys = `case-sensitive, gc-ttl, memory-quota (bytes), [filter] rules, [sink] dispatchers = [{matcher = [...], topic = "...", partition = "..."}] and [sink] <option> = "value"`

// LoadConfig reads a changefeed config file strictly: an unknown key or a
// malformed filter rule is an error, so that a typo is reported instead of
// silently replicating a different set of tables.
func LoadConfig(path string) (model.ChangefeedConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return model.ChangefeedConfig{}, fmt.Errorf("reading the config file: %w", err)
	}
	return ParseConfig(path, string(data))
}

// ParseConfig is LoadConfig on a file's contents; name is used in errors.
func ParseConfig(name, data string) (model.ChangefeedConfig, error) {
	var fc fileConfig
	md, err := toml.Decode(data, &fc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return model.ChangefeedConfig{}, fmt.Errorf("config file %s: line %d: %s", name, pe.Position.Line, pe.Message)
		}
		return model.ChangefeedConfig{}, fmt.Errorf("config file %s: %v", name, err)
	}
	var (
		sinkOpts    map[string]string
		dispatchers []model.DispatchRule
	)
	sinkKeys := make([]string, 0, len(fc.Sink))
	for k := range fc.Sink {
		sinkKeys = append(sinkKeys, k)
	}
	sort.Strings(sinkKeys)
	for _, k := range sinkKeys {
		if k == "dispatchers" {
			if err := md.PrimitiveDecode(fc.Sink[k], &dispatchers); err != nil {
				return model.ChangefeedConfig{}, fmt.Errorf("config file %s: [sink] dispatchers: %v", name, err)
			}
			continue
		}
		var v string
		if err := md.PrimitiveDecode(fc.Sink[k], &v); err != nil {
			return model.ChangefeedConfig{}, fmt.Errorf("config file %s: [sink] %s must be a string, as in %s = \"value\": %v", name, k, k, err)
		}
		if sinkOpts == nil {
			sinkOpts = map[string]string{}
		}
		sinkOpts[k] = v
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return model.ChangefeedConfig{}, fmt.Errorf("config file %s: unknown key %q; the known keys are %s", name, keys[0], ConfigKeys)
	}
	cfg := model.ChangefeedConfig{
		Filter:      model.FilterConfig{Rules: fc.Filter.Rules, CaseSensitive: fc.CaseSensitive},
		Sink:        sinkOpts,
		Dispatchers: dispatchers,
		GCTTL:       fc.GCTTL,
		MemoryQuota: fc.MemoryQuota,
	}
	if err := cfg.Validate(); err != nil {
		return model.ChangefeedConfig{}, fmt.Errorf("config file %s: %v", name, err)
	}
	if err := filter.ValidateConfig(cfg); err != nil {
		return model.ChangefeedConfig{}, fmt.Errorf("config file %s: %v", name, err)
	}
	return cfg, nil
}

// FilterText shows filter rules on one line.
func FilterText(f model.FilterConfig) string {
	if len(f.Rules) == 0 {
		return "all tables"
	}
	return strings.Join(f.Rules, ", ")
}
