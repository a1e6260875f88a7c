package logging

import (
	"fmt"
	"io"
	"log"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// hcLogger adapts zerolog to hclog.Logger so that hashicorp/raft logs as
// structured zerolog events. The hclog name becomes the "component" field
// and hclog key/value pairs become fields with snake_case keys (raft uses
// keys such as "last-index"; normalising them keeps field names stable for
// whoever queries the logs).
type hcLogger struct {
	zl      zerolog.Logger
	name    string
	implied []interface{}
	// level is shared by every logger derived through With/Named, as the
	// hclog contract asks SetLevel to affect related loggers.
	level *atomic.Int32
}

// HCLog returns an hclog.Logger that writes through zl. Its initial level is
// zl's level; SetLevel can lower or raise it further for raft alone.
func HCLog(zl zerolog.Logger, name string) hclog.Logger {
	lvl := &atomic.Int32{}
	lvl.Store(int32(fromZerolog(zl.GetLevel())))
	// Filtering moves to the hclog level so that SetLevel can ask for more
	// detail than the base logger was built with.
	return &hcLogger{zl: zl.Level(zerolog.TraceLevel), name: name, level: lvl}
}

func fromZerolog(l zerolog.Level) hclog.Level {
	switch l {
	case zerolog.TraceLevel:
		return hclog.Trace
	case zerolog.DebugLevel:
		return hclog.Debug
	case zerolog.InfoLevel, zerolog.NoLevel:
		return hclog.Info
	case zerolog.WarnLevel:
		return hclog.Warn
	case zerolog.ErrorLevel:
		return hclog.Error
	default:
		// Fatal, panic and disabled: hclog has nothing above Error.
		return hclog.Off
	}
}

func toZerolog(l hclog.Level) zerolog.Level {
	switch l {
	case hclog.Trace:
		return zerolog.TraceLevel
	case hclog.Debug:
		return zerolog.DebugLevel
	case hclog.Warn:
		return zerolog.WarnLevel
	case hclog.Error:
		return zerolog.ErrorLevel
	default:
		return zerolog.InfoLevel
	}
}

// snakeKey turns "last-index", "Commit Index" or "nodeID" style keys into
// lower-case snake_case.
func snakeKey(k string) string {
	var b strings.Builder
	b.Grow(len(k) + 4)
	prevLower := false
	for _, r := range k {
		switch {
		case unicode.IsUpper(r):
			if prevLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			prevLower = false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
			prevLower = true
		default:
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "_") {
				b.WriteByte('_')
			}
			prevLower = false
		}
	}
	s := strings.Trim(b.String(), "_")
	if s == "" {
		return "key"
	}
	return s
}

func addFields(e *zerolog.Event, args []interface{}) {
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			// hclog's own convention for a dangling value.
			e.Interface("extra_value_at_end", args[i])
			return
		}
		var key string
		switch k := args[i].(type) {
		case string:
			key = snakeKey(k)
		default:
			key = snakeKey(fmt.Sprint(k))
		}
		switch v := args[i+1].(type) {
		case error:
			if v == nil {
				e.Interface(key, nil)
			} else {
				e.Str(key, v.Error())
			}
		case hclog.Format:
			if len(v) > 0 {
				if f, ok := v[0].(string); ok {
					e.Str(key, fmt.Sprintf(f, v[1:]...))
					continue
				}
			}
			e.Str(key, fmt.Sprint(v...))
		case hclog.Hex:
			e.Str(key, fmt.Sprintf("0x%x", int(v)))
		case hclog.Octal:
			e.Str(key, fmt.Sprintf("0%o", int(v)))
		case hclog.Binary:
			e.Str(key, fmt.Sprintf("0b%b", int(v)))
		case hclog.Quote:
			e.Str(key, string(v))
		case fmt.Stringer:
			e.Str(key, v.String())
		default:
			e.Interface(key, v)
		}
	}
}

func (l *hcLogger) enabled(level hclog.Level) bool {
	cur := hclog.Level(l.level.Load())
	if cur == hclog.Off || level == hclog.Off {
		return false
	}
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return level >= cur
}

func (l *hcLogger) Log(level hclog.Level, msg string, args ...interface{}) {
	if !l.enabled(level) {
		return
	}
	e := l.zl.WithLevel(toZerolog(level))
	if l.name != "" {
		e = e.Str("component", l.name)
	}
	addFields(e, l.implied)
	addFields(e, args)
	e.Msg(msg)
}

func (l *hcLogger) Trace(msg string, args ...interface{}) { l.Log(hclog.Trace, msg, args...) }
func (l *hcLogger) Debug(msg string, args ...interface{}) { l.Log(hclog.Debug, msg, args...) }
func (l *hcLogger) Info(msg string, args ...interface{})  { l.Log(hclog.Info, msg, args...) }
func (l *hcLogger) Warn(msg string, args ...interface{})  { l.Log(hclog.Warn, msg, args...) }
func (l *hcLogger) Error(msg string, args ...interface{}) { l.Log(hclog.Error, msg, args...) }

func (l *hcLogger) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *hcLogger) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *hcLogger) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *hcLogger) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *hcLogger) IsError() bool { return l.enabled(hclog.Error) }

func (l *hcLogger) ImpliedArgs() []interface{} {
	return append([]interface{}(nil), l.implied...)
}

func (l *hcLogger) With(args ...interface{}) hclog.Logger {
	c := *l
	// Full-slice expression so siblings created from the same parent never
	// share (and overwrite) one backing array.
	c.implied = append(l.implied[:len(l.implied):len(l.implied)], args...)
	return &c
}

func (l *hcLogger) Name() string { return l.name }

func (l *hcLogger) Named(name string) hclog.Logger {
	c := *l
	if c.name == "" {
		c.name = name
	} else {
		c.name = c.name + "." + name
	}
	return &c
}

func (l *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

func (l *hcLogger) SetLevel(level hclog.Level) {
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	l.level.Store(int32(level))
}

func (l *hcLogger) GetLevel() hclog.Level { return hclog.Level(l.level.Load()) }

func (l *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer that logs each line through this logger's
// zerolog logger, honouring InferLevels and ForceLevel. Lines are filtered by
// the hclog level like direct calls.
func (l *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	zl := l.zl
	if l.name != "" {
		zl = zl.With().Str("component", l.name).Logger()
	}
	w := &lineWriter{zl: zl, infer: opts.InferLevels, fallback: zerolog.InfoLevel}
	if opts.ForceLevel != hclog.NoLevel {
		w.force = true
		w.fallback = toZerolog(opts.ForceLevel)
	}
	return &levelGate{l: l, w: w}
}

// levelGate drops lines below the hclog level before they reach zerolog.
type levelGate struct {
	l *hcLogger
	w *lineWriter
}

func (g *levelGate) Write(p []byte) (int, error) {
	lvl := g.w.fallback
	if !g.w.force && g.w.infer {
		if parsed, _, ok := parsePrefix(strings.TrimSpace(string(p))); ok {
			lvl = parsed
		}
	}
	if !g.l.enabled(fromZerolog(lvl)) {
		return len(p), nil
	}
	return g.w.Write(p)
}
