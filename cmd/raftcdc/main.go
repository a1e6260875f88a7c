// Command raftcdc is the whole product: `raftcdc server` runs a node,
// `raftcdc ctl` operates a cluster, `raftcdc tools` holds the verifier.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitCode carries a specific exit status out of a command.
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string { return e.err.Error() }
func (e *exitCode) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitCode{code: 2, err: fmt.Errorf(format, args...)}
}

func main() {
	root := &cobra.Command{
		Use:           "raftcdc",
		Short:         "A change-data-capture cluster in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newServerCmd())
	for _, add := range extraCommands {
		root.AddCommand(add())
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%v\nRun '%s --help' for usage.", err, c.CommandPath())
	})
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		var ec *exitCode
		if errors.As(err, &ec) {
			os.Exit(ec.code)
		}
		os.Exit(1)
	}
}

// extraCommands are added by the other files of this package (ctl, tools).
var extraCommands []func() *cobra.Command
