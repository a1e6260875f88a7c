package logging

import (
	"bytes"
	"log"
	"strings"

	"github.com/rs/zerolog"
)

// parsePrefix splits a line written in the "[LEVEL] text" convention used by
// memberlist, raft's standard-library fallbacks and many other Go libraries.
// ok is false when the line has no recognised level tag; the text is then
// returned unchanged so nothing is lost.
func parsePrefix(line string) (lvl zerolog.Level, text string, ok bool) {
	if !strings.HasPrefix(line, "[") {
		return zerolog.NoLevel, line, false
	}
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return zerolog.NoLevel, line, false
	}
	switch strings.ToUpper(line[1:end]) {
	case "TRACE":
		lvl = zerolog.TraceLevel
	case "DEBUG":
		lvl = zerolog.DebugLevel
	case "INFO":
		lvl = zerolog.InfoLevel
	case "WARN", "WARNING":
		lvl = zerolog.WarnLevel
	case "ERR", "ERROR":
		lvl = zerolog.ErrorLevel
	default:
		return zerolog.NoLevel, line, false
	}
	return lvl, strings.TrimSpace(line[end+1:]), true
}

// lineWriter turns each Write (the standard library's log.Logger issues
// exactly one per line) into one zerolog event.
type lineWriter struct {
	zl zerolog.Logger
	// component, when set, is stripped from the front of messages that
	// repeat it ("memberlist: ...") because it is already a field.
	component string
	// infer enables "[LEVEL]" parsing; when false every line is logged at
	// fallback (after stripping a recognised tag, if force is set).
	infer    bool
	force    bool
	fallback zerolog.Level
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for _, raw := range bytes.Split(bytes.TrimRight(p, "\r\n"), []byte{'\n'}) {
		line := strings.TrimRight(string(raw), "\r")
		if line == "" {
			continue
		}
		lvl, text, ok := parsePrefix(line)
		switch {
		case w.force:
			lvl = w.fallback
		case !w.infer:
			lvl, text = w.fallback, line
		case !ok:
			lvl = w.fallback
		}
		if w.component != "" {
			text = strings.TrimPrefix(text, w.component+": ")
		}
		w.zl.WithLevel(lvl).Msg(text)
	}
	// Report the whole buffer as written: a log line that could not be
	// parsed must not make the library retry or fail.
	return n, nil
}

// StdLogger returns a standard-library logger for libraries such as
// memberlist. Their "[DEBUG] memberlist: ..." / "[WARN] ..." / "[ERR] ..."
// prefixes become zerolog levels; untagged lines are logged at info. Every
// line carries component=<component>.
func StdLogger(zl zerolog.Logger, component string) *log.Logger {
	if component != "" {
		zl = zl.With().Str("component", component).Logger()
	}
	return log.New(&lineWriter{
		zl:        zl,
		component: component,
		infer:     true,
		fallback:  zerolog.InfoLevel,
	}, "", 0)
}
