// Package logging builds the process's zerolog logger and adapts it for the
// hashicorp libraries (raft speaks hclog, memberlist speaks *log.Logger), so
// that every line a node emits is structured and goes through one writer.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/internal/tty"
	"github.com/rs/zerolog"
)

// Formats accepted by New.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// ParseLevel maps a level name (trace, debug, info, warn, error; case
// insensitive, empty means info) to a zerolog level.
func ParseLevel(level string) (zerolog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "trace":
		return zerolog.TraceLevel, nil
	case "debug":
		return zerolog.DebugLevel, nil
	case "", "info":
		return zerolog.InfoLevel, nil
	case "warn", "warning":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	default:
		return zerolog.NoLevel, fmt.Errorf("unknown log level %q: want one of trace, debug, info, warn, error", level)
	}
}

// New returns a logger writing to w at the given level. format is "json"
// (the default when empty) or "console" (human readable, coloured only when
// w is a terminal so that redirected output stays free of escape codes).
func New(level, format string, w io.Writer) (zerolog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	if w == nil {
		return zerolog.Nop(), fmt.Errorf("create logger: nil writer")
	}
	var out io.Writer
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", FormatJSON:
		out = w
	case FormatConsole:
		out = zerolog.ConsoleWriter{
			Out:        w,
			TimeFormat: time.RFC3339Nano,
			NoColor:    !isTerminal(w),
		}
	default:
		return zerolog.Nop(), fmt.Errorf("unknown log format %q: want json or console", format)
	}
	return zerolog.New(out).Level(lvl).Hook(msTimestamp{}), nil
}

// msTimestamp stamps every event with the UTC time to the millisecond:
// zerolog's own Timestamp() writes whole seconds unless its package-level
// TimeFieldFormat is changed, and a pipeline's start, a barrier step or a
// leader change are all well under a second.
type msTimestamp struct{}

// TimeLayout is the layout of the "time" field: RFC 3339 with
// milliseconds, which time.RFC3339 still parses.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

func (msTimestamp) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format(TimeLayout))
}

// isTerminal reports whether w is a terminal (a character device such as
// /dev/null is not); a false answer only costs colours.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && tty.IsTerminalFile(f)
}
