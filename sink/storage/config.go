package storage

import (
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/codec/canal"
	"github.com/raftcdc/raftcdc/codec/csv"
)

// Scheme is the URI scheme of the storage sink on a local (or mounted)
// file system.
const Scheme = "file"

// Protocols.
const (
	ProtocolCanalJSON = "canal-json"
	ProtocolCSV       = "csv"
)

// Date separators: how data files are grouped by the commit date.
const (
	DateNone  = "none"
	DateYear  = "year"
	DateMonth = "month"
	DateDay   = "day"
)

// Limits of the URI parameters. flush-interval and file-size go lower than
// TiCDC's (2 s, 1 MiB) so that tests can exercise flushing and file
// splitting quickly.
const (
	DefaultFlushInterval = 5 * time.Second
	DefaultFileSize      = 64 << 20
	DefaultWorkerCount   = 16
	minFlushInterval     = 10 * time.Millisecond
	maxFlushInterval     = 10 * time.Minute
	minFileSize          = 1 << 10
	maxFileSize          = 512 << 20
	minFileIndexWidth    = 6
	maxFileIndexWidth    = 20
	maxWorkerCount       = 512
)

// Config is a parsed storage sink URI.
type Config struct {
	// Root is the absolute directory everything is written under.
	Root           string
	Protocol       string
	FlushInterval  time.Duration
	FileSize       int
	DateSeparator  string
	FileIndexWidth int
	WorkerCount    int
	// Canal are the canal-json options (protocol=canal-json).
	Canal canal.Options
	// CSV are the csv options (protocol=csv); its Terminator is also the
	// line terminator of canal-json files.
	CSV csv.Options
}

// DefaultConfig is the configuration of "file:///root" with no parameters.
func DefaultConfig(root string) Config {
	return Config{
		Root:           root,
		Protocol:       ProtocolCanalJSON,
		FlushInterval:  DefaultFlushInterval,
		FileSize:       DefaultFileSize,
		DateSeparator:  DateDay,
		FileIndexWidth: minFileIndexWidth,
		WorkerCount:    DefaultWorkerCount,
		CSV:            csv.DefaultOptions(),
	}
}

// Extension is the data file extension of the protocol.
func (c Config) Extension() string {
	if c.Protocol == ProtocolCSV {
		return ".csv"
	}
	return ".json"
}

// Terminator ends every line of a data file.
func (c Config) Terminator() string { return c.CSV.Terminator }

const paramNames = "protocol, flush-interval, file-size, date-separator, file-index-width, worker-count, enable-tidb-extension, only-output-updated-columns, content-compatible, delimiter, quote, null, include-commit-ts, output-old-value, binary-encoding-method, terminator"

func paramErr(name, value, accepted string) error {
	return fmt.Errorf("storage sink URI parameter %q: invalid value %q (accepted: %s)", name, value, accepted)
}

// ParseURI parses "file:///abs/dir?protocol=canal-json&...". Unknown or
// repeated parameters are errors naming the parameter.
func ParseURI(uri string) (Config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Config{}, fmt.Errorf("parse storage sink URI: %w", err)
	}
	if u.Scheme != Scheme {
		return Config{}, fmt.Errorf("storage sink URI %q: scheme must be %q", uri, Scheme)
	}
	if u.Opaque != "" || u.Host != "" || !filepath.IsAbs(u.Path) {
		return Config{}, fmt.Errorf("storage sink URI %q: the directory must be an absolute path, as in file:///var/lib/raftcdc/out", uri)
	}
	if u.User != nil || u.Fragment != "" {
		return Config{}, fmt.Errorf("storage sink URI %q: only file:///abs/dir?parameters is accepted", uri)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("storage sink URI %q: parse query: %w", uri, err)
	}
	cfg := DefaultConfig(filepath.Clean(u.Path))
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if len(q[name]) != 1 {
			return Config{}, fmt.Errorf("storage sink URI parameter %q is given %d times; give it once", name, len(q[name]))
		}
		if err := cfg.set(name, q[name][0]); err != nil {
			return Config{}, err
		}
	}
	for _, name := range names {
		switch name {
		case "delimiter", "quote", "null", "include-commit-ts", "output-old-value", "binary-encoding-method":
			if cfg.Protocol != ProtocolCSV {
				return Config{}, fmt.Errorf("storage sink URI parameter %q applies to protocol=csv only (protocol is %s)", name, cfg.Protocol)
			}
		case "enable-tidb-extension", "only-output-updated-columns", "content-compatible":
			if cfg.Protocol != ProtocolCanalJSON {
				return Config{}, fmt.Errorf("storage sink URI parameter %q applies to protocol=canal-json only (protocol is %s)", name, cfg.Protocol)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func parseBool(name, v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, paramErr(name, v, "true or false")
	}
	return b, nil
}

func (c *Config) set(name, v string) error {
	var err error
	switch name {
	case "protocol":
		if v != ProtocolCanalJSON && v != ProtocolCSV {
			return paramErr(name, v, "canal-json or csv")
		}
		c.Protocol = v
	case "flush-interval":
		d, perr := time.ParseDuration(v)
		if perr != nil || d < minFlushInterval || d > maxFlushInterval {
			return paramErr(name, v, fmt.Sprintf("a Go duration from %v to %v", minFlushInterval, maxFlushInterval))
		}
		c.FlushInterval = d
	case "file-size":
		n, perr := strconv.Atoi(v)
		if perr != nil || n < minFileSize || n > maxFileSize {
			return paramErr(name, v, fmt.Sprintf("a number of bytes from %d to %d", minFileSize, maxFileSize))
		}
		c.FileSize = n
	case "date-separator":
		switch v {
		case DateNone, DateYear, DateMonth, DateDay:
		default:
			return paramErr(name, v, "none, year, month or day")
		}
		c.DateSeparator = v
	case "file-index-width":
		n, perr := strconv.Atoi(v)
		if perr != nil || n < minFileIndexWidth || n > maxFileIndexWidth {
			return paramErr(name, v, fmt.Sprintf("an integer from %d to %d", minFileIndexWidth, maxFileIndexWidth))
		}
		c.FileIndexWidth = n
	case "worker-count":
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > maxWorkerCount {
			return paramErr(name, v, fmt.Sprintf("an integer from 1 to %d", maxWorkerCount))
		}
		c.WorkerCount = n
	case "enable-tidb-extension":
		c.Canal.EnableTiDBExtension, err = parseBool(name, v)
	case "only-output-updated-columns":
		c.Canal.OnlyOutputUpdatedColumns, err = parseBool(name, v)
	case "content-compatible":
		c.Canal.ContentCompatible, err = parseBool(name, v)
	case "delimiter":
		c.CSV.Delimiter = v
	case "quote":
		c.CSV.Quote = v
	case "null":
		c.CSV.Null = v
	case "include-commit-ts":
		c.CSV.IncludeCommitTs, err = parseBool(name, v)
	case "output-old-value":
		c.CSV.OutputOldValue, err = parseBool(name, v)
	case "binary-encoding-method":
		if v != csv.BinaryBase64 && v != csv.BinaryHex {
			return paramErr(name, v, "base64 or hex")
		}
		c.CSV.BinaryEncoding = v
	case "terminator":
		switch v {
		case "\r\n", "\n", `\r\n`, `\n`:
			c.CSV.Terminator = strings.NewReplacer(`\r`, "\r", `\n`, "\n").Replace(v)
		default:
			return paramErr(name, v, `\r\n or \n (written as such or URL-encoded)`)
		}
	default:
		return fmt.Errorf("storage sink URI: unknown parameter %q (known: %s)", name, paramNames)
	}
	return err
}

// Validate checks the whole configuration, naming the parameter at fault.
func (c Config) Validate() error {
	if !filepath.IsAbs(c.Root) {
		return fmt.Errorf("storage sink directory %q is not an absolute path", c.Root)
	}
	if err := c.CSV.Validate(); err != nil {
		// Name the URI parameter: the csv package names its option.
		return fmt.Errorf("storage sink URI: %w (parameters delimiter, quote, null, binary-encoding-method, terminator)", err)
	}
	if c.FlushInterval < minFlushInterval || c.FlushInterval > maxFlushInterval {
		return paramErr("flush-interval", c.FlushInterval.String(), fmt.Sprintf("%v to %v", minFlushInterval, maxFlushInterval))
	}
	if c.FileSize < minFileSize || c.FileSize > maxFileSize {
		return paramErr("file-size", strconv.Itoa(c.FileSize), fmt.Sprintf("%d to %d", minFileSize, maxFileSize))
	}
	return nil
}
