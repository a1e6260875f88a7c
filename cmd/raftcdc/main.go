// Command raftcdc is the whole product: `raftcdc server` runs a node,
// `raftcdc ctl` operates a cluster, `raftcdc tools` holds the verifier.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/raftcdc/raftcdc/ctl"
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
	os.Exit(runCLI(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func newRootCmd() *cobra.Command {
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
	groupCommand(root)
	return root
}

// runCLI runs the command line with the given arguments and streams and
// returns the exit status: 0 ok, 1 error, 2 usage. Tests call it in-process.
func runCLI(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// SIGTERM (kill, systemd, a supervisor) ends a command the way Ctrl-C
	// does: a long-running tool still prints its summary and cleans up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		if hint := ctl.Hint(err); hint != "" {
			fmt.Fprintln(stderr, "Hint:", hint)
		}
		var ec *exitCode
		if errors.As(err, &ec) {
			return ec.code
		}
		return 1
	}
	return 0
}

// extraCommands are added by the other files of this package (ctl, tools).
var extraCommands []func() *cobra.Command
