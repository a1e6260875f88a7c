package main

import (
	"github.com/raftcdc/raftcdc/server"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
)

// cdcOptions are the owner and processor flags.
type cdcOptions struct{}

var cdcFlags cdcOptions

func addCDCFlags(f *pflag.FlagSet) {}

// setupCDC wires the owner, the processors and the changefeed API into node.
func setupCDC(node *server.Node, o *cdcOptions, log zerolog.Logger) error { return nil }
