package datagen

import (
	"fmt"
	"math/big"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Scheme is the URI scheme of the built-in generator.
const Scheme = "datagen"

// Limits of the URI parameters.
const (
	MaxTables          = 100000
	MaxRate            = 100000
	MaxRowSize         = 1 << 20
	MaxKeys            = 1 << 40
	maxRateDecimals    = 6
	minResolveInterval = time.Millisecond
	maxResolveInterval = time.Minute
	MaxTxnRows         = 10000
	minDDLEvery        = 100 * time.Millisecond
	maxDDLEvery        = 24 * time.Hour
	// The epoch may be set anywhere in this century: far enough from the
	// TSO's limits that every offset computed from it fits.
	minEpochUnixMilli = 946684800000  // 2000-01-01T00:00:00Z
	maxEpochUnixMilli = 4102444800000 // 2100-01-01T00:00:00Z
)

// Config is a parsed datagen URI.
type Config struct {
	Tables int
	// Rate is rows per second per table as the exact fraction
	// RateNum/RateDen, so that a commit ts computed from it is the same on
	// every machine (a float would not guarantee that after arithmetic).
	RateNum, RateDen uint64
	RowSize          int
	// Mix holds the insert, update and delete weights.
	Mix             [3]uint64
	Keys            uint64
	Seed            uint64
	Schema          string
	GCLife          time.Duration
	ResolveInterval time.Duration
	// TxnRows is the number of rows of one transaction and TxnTables the
	// number of tables it spans (version 2 streams only).
	TxnRows, TxnTables int
	// DDLEvery is the interval between two DDL events of the whole
	// upstream; zero means no DDL (version 2 streams only).
	DDLEvery time.Duration
	// EpochMs is the wall time (Unix milliseconds) at which the history
	// begins: the tables exist, empty, before it.
	EpochMs int64
	// ClusterID is the simulated upstream's identity (the cluster-id
	// parameter); empty means the one derived from the seed and schema.
	// GC safepoints are kept per identity, so two URIs with one cluster ID
	// are one upstream to the owner.
	ClusterID string
}

// UpstreamID is the identity of the simulated upstream.
func (c Config) UpstreamID() string {
	if c.ClusterID != "" {
		return c.ClusterID
	}
	return "datagen-" + strconv.FormatUint(c.Seed, 10) + "-" + c.Schema
}

// DefaultConfig is the configuration of a bare "datagen://".
func DefaultConfig() Config {
	return Config{
		Tables:          8,
		RateNum:         10,
		RateDen:         1,
		RowSize:         64,
		Mix:             [3]uint64{60, 30, 10},
		Keys:            1000,
		Seed:            1,
		Schema:          "datagen",
		GCLife:          10 * time.Minute,
		ResolveInterval: 50 * time.Millisecond,
		TxnRows:         1,
		TxnTables:       1,
		EpochMs:         epochUnixMilli,
	}
}

// Rate is the per-table rate in rows per second, for display and sizing only.
func (c Config) Rate() float64 { return float64(c.RateNum) / float64(c.RateDen) }

// URI renders the configuration with every parameter spelled out, so that two
// URIs naming the same stream render the same.
func (c Config) URI() string {
	q := url.Values{}
	q.Set("tables", strconv.Itoa(c.Tables))
	q.Set("rate", new(big.Rat).SetFrac(new(big.Int).SetUint64(c.RateNum), new(big.Int).SetUint64(c.RateDen)).FloatString(maxRateDecimals))
	q.Set("row-size", strconv.Itoa(c.RowSize))
	q.Set("mix", fmt.Sprintf("%d:%d:%d", c.Mix[0], c.Mix[1], c.Mix[2]))
	q.Set("keys", strconv.FormatUint(c.Keys, 10))
	q.Set("seed", strconv.FormatUint(c.Seed, 10))
	q.Set("schema", c.Schema)
	q.Set("gc-life", c.GCLife.String())
	q.Set("resolve-interval", c.ResolveInterval.String())
	q.Set("txn-rows", strconv.Itoa(c.TxnRows))
	q.Set("txn-tables", strconv.Itoa(c.TxnTables))
	q.Set("ddl-every", c.DDLEvery.String())
	q.Set("epoch", time.UnixMilli(c.EpochMs).UTC().Format(epochLayout))
	if id := c.UpstreamID(); id != (Config{Seed: c.Seed, Schema: c.Schema}).UpstreamID() {
		q.Set("cluster-id", id)
	}
	return Scheme + "://?" + q.Encode()
}

// Validate checks ranges, for configurations built in code rather than parsed.
func (c Config) Validate() error {
	switch {
	case c.Tables < 1 || c.Tables > MaxTables:
		return paramErr("tables", strconv.Itoa(c.Tables), fmt.Sprintf("an integer from 1 to %d", MaxTables))
	case c.RateDen == 0 || c.RateNum == 0 || c.RateNum > MaxRate*c.RateDen:
		return paramErr("rate", fmt.Sprintf("%d/%d", c.RateNum, c.RateDen), fmt.Sprintf("0 < rate <= %d", MaxRate))
	case c.RowSize < 0 || c.RowSize > MaxRowSize:
		return paramErr("row-size", strconv.Itoa(c.RowSize), fmt.Sprintf("an integer from 0 to %d", MaxRowSize))
	case c.Mix[0]+c.Mix[1]+c.Mix[2] == 0:
		return paramErr("mix", "0:0:0", "insert:update:delete weights with a positive sum")
	case c.Keys < 1 || c.Keys > MaxKeys:
		return paramErr("keys", strconv.FormatUint(c.Keys, 10), fmt.Sprintf("an integer from 1 to %d", uint64(MaxKeys)))
	case !validSchema(c.Schema):
		return paramErr("schema", c.Schema, "1 to 64 letters, digits or underscores")
	case c.GCLife <= 0:
		return paramErr("gc-life", c.GCLife.String(), "a positive Go duration such as 10m")
	case c.ResolveInterval < minResolveInterval || c.ResolveInterval > maxResolveInterval:
		return paramErr("resolve-interval", c.ResolveInterval.String(), fmt.Sprintf("a Go duration from %v to %v", minResolveInterval, maxResolveInterval))
	case c.TxnTables < 1 || c.TxnTables > c.Tables:
		return paramErr("txn-tables", strconv.Itoa(c.TxnTables), fmt.Sprintf("an integer from 1 to the number of tables (%d)", c.Tables))
	case c.TxnRows < c.TxnTables || c.TxnRows > MaxTxnRows || uint64(c.TxnRows) > c.Keys:
		return paramErr("txn-rows", strconv.Itoa(c.TxnRows), fmt.Sprintf("an integer from txn-tables (%d) to %d and at most keys (%d)", c.TxnTables, MaxTxnRows, c.Keys))
	case c.DDLEvery != 0 && (c.DDLEvery < minDDLEvery || c.DDLEvery > maxDDLEvery || c.DDLEvery%time.Millisecond != 0):
		return paramErr("ddl-every", c.DDLEvery.String(), ddlEveryAccepted)
	case c.EpochMs < minEpochUnixMilli || c.EpochMs >= maxEpochUnixMilli:
		return paramErr("epoch", time.UnixMilli(c.EpochMs).UTC().Format(epochLayout), epochAccepted)
	}
	return nil
}

const (
	epochLayout      = "2006-01-02T15:04:05.000Z07:00"
	ddlEveryAccepted = "0 (no DDL) or a Go duration in whole milliseconds from 100ms to 24h, such as 30s"
	epochAccepted    = "an RFC 3339 time in this century, such as 2026-01-01T00:00:00Z"
)

func paramErr(name, value, accepted string) error {
	return fmt.Errorf("datagen URI parameter %q: invalid value %q (accepted: %s)", name, value, accepted)
}

// ParseURI parses "datagen://?tables=12&rate=100&...". Every parameter is
// optional; unknown or repeated parameters are errors so that a typo does not
// silently produce a different stream than the one the user meant.
func ParseURI(uri string) (Config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Config{}, fmt.Errorf("parse datagen URI %q: %w", uri, err)
	}
	if u.Scheme != Scheme {
		return Config{}, fmt.Errorf("datagen URI %q: scheme must be %q", uri, Scheme)
	}
	if u.Opaque != "" || u.User != nil || u.Host != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return Config{}, fmt.Errorf("datagen URI %q: only query parameters are accepted, as in datagen://?tables=8&rate=10", uri)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("datagen URI %q: parse query: %w", uri, err)
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names) // report the first bad parameter deterministically
	cfg := DefaultConfig()
	for _, name := range names {
		vals := q[name]
		if len(vals) != 1 {
			return Config{}, fmt.Errorf("datagen URI parameter %q is given %d times; give it once", name, len(vals))
		}
		if err := cfg.set(name, vals[0]); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

const paramNames = "tables, rate, row-size, mix, keys, seed, schema, gc-life, resolve-interval, txn-rows, txn-tables, ddl-every, epoch, cluster-id"

func (c *Config) set(name, v string) error {
	switch name {
	case "tables":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxTables {
			return paramErr(name, v, fmt.Sprintf("an integer from 1 to %d", MaxTables))
		}
		c.Tables = n
	case "rate":
		num, den, ok := parseDecimal(v, maxRateDecimals)
		if !ok || num == 0 || num > MaxRate*den {
			return paramErr(name, v, fmt.Sprintf("a decimal number with at most %d decimals, 0 < rate <= %d", maxRateDecimals, MaxRate))
		}
		c.RateNum, c.RateDen = num, den
	case "row-size":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxRowSize {
			return paramErr(name, v, fmt.Sprintf("an integer from 0 to %d", MaxRowSize))
		}
		c.RowSize = n
	case "mix":
		parts := strings.Split(v, ":")
		accepted := "three non-negative integer weights insert:update:delete with a positive sum, such as 60:30:10"
		if len(parts) != 3 {
			return paramErr(name, v, accepted)
		}
		var mix [3]uint64
		for i, p := range parts {
			w, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return paramErr(name, v, accepted)
			}
			mix[i] = w
		}
		if mix[0]+mix[1]+mix[2] == 0 {
			return paramErr(name, v, accepted)
		}
		c.Mix = mix
	case "keys":
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n < 1 || n > MaxKeys {
			return paramErr(name, v, fmt.Sprintf("an integer from 1 to %d", uint64(MaxKeys)))
		}
		c.Keys = n
	case "seed":
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return paramErr(name, v, "an unsigned 64-bit integer")
		}
		c.Seed = n
	case "schema":
		if !validSchema(v) {
			return paramErr(name, v, "1 to 64 letters, digits or underscores")
		}
		c.Schema = v
	case "gc-life":
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return paramErr(name, v, "a positive Go duration such as 10m")
		}
		c.GCLife = d
	case "resolve-interval":
		d, err := time.ParseDuration(v)
		if err != nil || d < minResolveInterval || d > maxResolveInterval {
			return paramErr(name, v, fmt.Sprintf("a Go duration from %v to %v", minResolveInterval, maxResolveInterval))
		}
		c.ResolveInterval = d
	case "txn-rows", "txn-tables":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxTxnRows {
			return paramErr(name, v, fmt.Sprintf("an integer from 1 to %d", MaxTxnRows))
		}
		if name == "txn-rows" {
			c.TxnRows = n
		} else {
			c.TxnTables = n
		}
	case "ddl-every":
		d, err := time.ParseDuration(v)
		if err != nil || d != 0 && (d < minDDLEvery || d > maxDDLEvery || d%time.Millisecond != 0) {
			return paramErr(name, v, ddlEveryAccepted)
		}
		c.DDLEvery = d
	case "epoch":
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || t.UnixMilli() < minEpochUnixMilli || t.UnixMilli() >= maxEpochUnixMilli {
			return paramErr(name, v, epochAccepted)
		}
		c.EpochMs = t.UnixMilli()
	case "cluster-id":
		if !validClusterID(v) {
			return paramErr(name, v, "1 to 64 letters, digits, dots, dashes or underscores")
		}
		c.ClusterID = v
	default:
		return fmt.Errorf("datagen URI: unknown parameter %q (known: %s)", name, paramNames)
	}
	return nil
}

// parseDecimal parses "12", "0.5" or "2.25" exactly into num/den in lowest
// terms. Exponents, signs and more than maxDecimals fraction digits are
// refused.
func parseDecimal(s string, maxDecimals int) (num, den uint64, ok bool) {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" && frac == "" || hasDot && frac == "" || len(frac) > maxDecimals {
		return 0, 0, false
	}
	digits := intPart + frac
	if len(digits) > 18 {
		return 0, 0, false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return 0, 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	den = 1
	for range frac {
		den *= 10
	}
	g := gcd(n, den)
	if g == 0 {
		return 0, den, true
	}
	return n / g, den / g, true
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func validSchema(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func validClusterID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
