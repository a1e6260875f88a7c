package sqlsink

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SafeMode says when rows are written idempotently.
type SafeMode string

const (
	// SafeAuto writes idempotently only in a table's replay window (rows at
	// or below TableOptions.ReplayUntil) and when a batch is retried after
	// its outcome became unknown.
	SafeAuto SafeMode = "auto"
	// SafeAlways writes every row idempotently.
	SafeAlways SafeMode = "true"
	// SafeNever never rewrites statements for the replay window: a row that
	// is already downstream is a duplicate-key error. Retries after an
	// unknown outcome are still idempotent (see DESIGN.md).
	SafeNever SafeMode = "false"
)

// Atomicity is TiCDC's transaction-atomicity.
type Atomicity string

const (
	// AtomicityTable applies the rows an upstream transaction wrote to one
	// table in one downstream transaction, however many they are.
	AtomicityTable Atomicity = "table"
	// AtomicityNone lets a transaction larger than max-txn-row be split into
	// several downstream transactions.
	AtomicityNone Atomicity = "none"
)

// Config holds the parameters both SQL sinks share, spelled as TiCDC spells
// them in its sink URI.
type Config struct {
	WorkerCount       int
	MaxTxnRow         int
	MaxMultiUpdateRow int
	SafeMode          SafeMode
	BatchDML          bool
	MultiStmt         bool
	CachePrepStmts    bool
	Atomicity         Atomicity
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	CreateTables      bool
}

// Limits of the numeric parameters.
const (
	MaxWorkerCount = 1024
	MaxTxnRowLimit = 65536
)

// DefaultConfig is TiCDC's defaults, except transaction-atomicity (table:
// the issue asks for atomic transactions where the sink allows it; TiCDC
// defaults to none) and safe-mode (auto, which TiCDC does not have).
func DefaultConfig() Config {
	return Config{
		WorkerCount:       16,
		MaxTxnRow:         256,
		MaxMultiUpdateRow: 40,
		SafeMode:          SafeAuto,
		BatchDML:          true,
		MultiStmt:         true,
		CachePrepStmts:    true,
		Atomicity:         AtomicityTable,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		CreateTables:      true,
	}
}

// CommonParams are the parameter names Config.Set understands.
var CommonParams = []string{
	"worker-count", "max-txn-row", "max-multi-update-row", "safe-mode",
	"batch-dml-enable", "multi-stmt-enable", "cache-prep-stmts",
	"transaction-atomicity", "read-timeout", "write-timeout", "create-tables",
}

// Set applies one common parameter. It reports false for a name that is
// not a common parameter; an invalid value is an error naming the
// parameter and the accepted values.
func (c *Config) Set(name, value string) (bool, error) {
	bad := func(want string) error {
		return fmt.Errorf("parameter %s=%q: %s", name, value, want)
	}
	intIn := func(lo, hi int) (int, error) {
		n, err := strconv.Atoi(value)
		if err != nil || n < lo || n > hi {
			return 0, bad(fmt.Sprintf("want a whole number from %d to %d", lo, hi))
		}
		return n, nil
	}
	boolean := func() (bool, error) {
		switch strings.ToLower(value) {
		case "true", "1":
			return true, nil
		case "false", "0":
			return false, nil
		}
		return false, bad("want true or false")
	}
	duration := func() (time.Duration, error) {
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			return 0, bad("want a positive duration such as 30s or 2m")
		}
		return d, nil
	}
	var err error
	switch name {
	case "worker-count":
		c.WorkerCount, err = intIn(1, MaxWorkerCount)
	case "max-txn-row":
		c.MaxTxnRow, err = intIn(1, MaxTxnRowLimit)
	case "max-multi-update-row":
		c.MaxMultiUpdateRow, err = intIn(1, MaxTxnRowLimit)
	case "safe-mode":
		switch SafeMode(strings.ToLower(value)) {
		case SafeAuto, SafeAlways, SafeNever:
			c.SafeMode = SafeMode(strings.ToLower(value))
		default:
			err = bad("want auto, true or false")
		}
	case "batch-dml-enable":
		c.BatchDML, err = boolean()
	case "multi-stmt-enable":
		c.MultiStmt, err = boolean()
	case "cache-prep-stmts":
		c.CachePrepStmts, err = boolean()
	case "transaction-atomicity":
		switch Atomicity(strings.ToLower(value)) {
		case AtomicityTable, AtomicityNone:
			c.Atomicity = Atomicity(strings.ToLower(value))
		default:
			err = bad("want table or none")
		}
	case "read-timeout":
		c.ReadTimeout, err = duration()
	case "write-timeout":
		c.WriteTimeout, err = duration()
	case "create-tables":
		c.CreateTables, err = boolean()
	default:
		return false, nil
	}
	return true, err
}

// ParseQuery walks a URI's query: every parameter must appear once, and
// each goes to Config.Set or, failing that, to own (the sink's own
// parameters, which reports false for names it does not know). An unknown
// name is an error that lists the known ones.
func (c *Config) ParseQuery(q url.Values, own func(name, value string) (bool, error), ownNames []string) error {
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		vals := q[name]
		if len(vals) != 1 {
			return fmt.Errorf("parameter %s is given %d times", name, len(vals))
		}
		ok, err := c.Set(name, vals[0])
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if own != nil {
			if ok, err = own(name, vals[0]); err != nil {
				return err
			}
		}
		if !ok {
			known := append(append([]string(nil), CommonParams...), ownNames...)
			sort.Strings(known)
			return fmt.Errorf("unknown parameter %q (known: %s)", name, strings.Join(known, ", "))
		}
	}
	return nil
}
