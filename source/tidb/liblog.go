package tidb

import (
	"github.com/pingcap/log"
	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RouteLibraryLogs sends the logs of PD's and TiKV's Go clients (which
// write through pingcap/log, a process-wide zap logger, to stdout by
// default) into l, warnings and above only, with component=tikv-client.
// The process calls it once at start; it replaces a global of those
// libraries, which nothing in raftcdc can scope more narrowly.
func RouteLibraryLogs(l zerolog.Logger) {
	core := &zerologCore{log: l.With().Str("component", "tikv-client").Logger(), min: zapcore.WarnLevel}
	lvl := zap.NewAtomicLevelAt(zapcore.WarnLevel)
	log.ReplaceGlobals(zap.New(core), &log.ZapProperties{Core: core, Syncer: zapcore.AddSync(zapDiscard{}), ErrSyncer: zapcore.AddSync(zapDiscard{}), Level: lvl})
}

type zapDiscard struct{}

func (zapDiscard) Write(p []byte) (int, error) { return len(p), nil }

// zerologCore is a zap core that writes entries to a zerolog logger.
type zerologCore struct {
	log    zerolog.Logger
	min    zapcore.Level
	fields []zapcore.Field
}

func (c *zerologCore) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c *zerologCore) With(fields []zapcore.Field) zapcore.Core {
	n := *c
	n.fields = append(append([]zapcore.Field(nil), c.fields...), fields...)
	return &n
}

func (c *zerologCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zerologCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	lvl := zerolog.WarnLevel
	switch {
	case e.Level >= zapcore.FatalLevel:
		// A library's fatal must not end the process through zerolog.
		lvl = zerolog.ErrorLevel
	case e.Level >= zapcore.ErrorLevel:
		lvl = zerolog.ErrorLevel
	}
	ev := c.log.WithLevel(lvl).Fields(enc.Fields)
	if e.Caller.Defined {
		ev = ev.Str("lib_caller", e.Caller.TrimmedPath())
	}
	ev.Msg(e.Message)
	return nil
}

func (c *zerologCore) Sync() error { return nil }
