package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/ctl"
	terminal "github.com/raftcdc/raftcdc/internal/tty"
	"github.com/raftcdc/raftcdc/model"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newCtlCmd) }

// Environment variables ctl reads when the matching flag is not given.
const (
	envServer = "RAFTCDC_SERVER"
	envToken  = "RAFTCDC_TOKEN"
)

const defaultServer = "127.0.0.1:8300"

// ctlOptions are the global ctl flags of one invocation.
type ctlOptions struct {
	server     string
	output     string
	timeout    time.Duration
	token      string
	ca         string
	consistent bool
}

func newCtlCmd() *cobra.Command {
	o := &ctlOptions{}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Operate a raftcdc cluster through any node's API",
		Long: `Operate a raftcdc cluster through any node's API. Every node answers reads
and forwards writes to the Raft leader, so --server can name any node; with
several addresses the next is tried when one cannot be reached.

Exit status: 0 ok, 1 error (the server's message is printed), 2 usage
(bad flags, arguments, IDs or timestamps, found before anything is sent).`,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return o.resolve(cmd) },
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.server, "server", defaultServer, "node API addresses, comma-separated, host:port or https://host:port (or "+envServer+")")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long one request may take")
	f.StringVar(&o.token, "token", "", "API token, sent as a bearer token (or "+envToken+")")
	f.StringVar(&o.ca, "ca", "", "PEM file of the CA that signed the API's certificate; switches to https")
	f.BoolVar(&o.consistent, "consistent", true, "read changefeeds, captures and processors through the leader, so a read sees every earlier write (false: the node's own replica, which answers without a leader but may lag)")
	cmd.AddCommand(newChangefeedCmd(o), newCaptureCmd(o), newProcessorCmd(o), newClusterCmd(o), newTSOCmd(o))
	return cmd
}

// resolve fills what flags left unset from the environment and checks the
// global flags, before any request.
func (o *ctlOptions) resolve(cmd *cobra.Command) error {
	fl := cmd.Flags()
	if !fl.Changed("server") {
		if v := os.Getenv(envServer); v != "" {
			o.server = v
		}
	}
	// The token is never a flag default, so that it cannot show in --help.
	if !fl.Changed("token") {
		o.token = os.Getenv(envToken)
	}
	if o.output != "table" && o.output != "json" {
		return usageError("--output %q is not a format: use table or json", o.output)
	}
	if o.timeout <= 0 {
		return usageError("--timeout must be positive, not %v", o.timeout)
	}
	if len(ctl.SplitServers(o.server)) == 0 {
		return usageError("--server is empty: give host:port[,host:port]")
	}
	return nil
}

func (o *ctlOptions) client() (*ctl.Client, error) {
	c, err := ctl.NewClient(ctl.Options{Servers: ctl.SplitServers(o.server), Token: o.token, CAFile: o.ca, Timeout: o.timeout, Consistent: o.consistent})
	if err != nil {
		return nil, usageError("%v", err)
	}
	return c, nil
}

// withClient runs fn with a client for this invocation.
func (o *ctlOptions) withClient(cmd *cobra.Command, fn func(ctx context.Context, c *ctl.Client) error) error {
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(cmd.Context(), c)
}

// print writes v as JSON, or calls table for people.
func (o *ctlOptions) print(cmd *cobra.Command, v any, table func(w io.Writer) error) error {
	if o.output == "json" {
		return ctl.WriteJSON(cmd.OutOrStdout(), v)
	}
	return table(cmd.OutOrStdout())
}

func (o *ctlOptions) json() bool { return o.output == "json" }

// groupCommand makes a command that only holds subcommands reject an unknown
// subcommand as a usage error (cobra would print help and exit 0), and
// applies itself to every such command below.
func groupCommand(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		groupCommand(sub)
	}
	if cmd.Runnable() || !cmd.HasSubCommands() {
		return
	}
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2
		}
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usageError("%s\nRun '%s --help' for usage.", msg, c.CommandPath())
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("%s takes no arguments, got %q\nRun '%s --help' for usage.", cmd.CommandPath(), args[0], cmd.CommandPath())
	}
	return nil
}

// isTerminal says whether r is a person at a terminal. A reader can answer
// for itself (tests use that); otherwise only a file that answers the
// terminal ioctl counts — /dev/null is a character device too, and a script
// run with </dev/null must not be asked anything.
func isTerminal(r io.Reader) bool {
	if t, ok := r.(interface{ IsTerminal() bool }); ok {
		return t.IsTerminal()
	}
	f, ok := r.(*os.File)
	return ok && terminal.IsTerminalFile(f)
}

// errAborted is returned when the operator answers no.
var errAborted = errors.New("aborted: nothing was changed")

// confirm asks a yes/no question on stderr, unless skip is set or stdin is
// not a terminal (scripts cannot answer; they pass --no-confirm or pipe).
func confirm(cmd *cobra.Command, skip bool, question string) error {
	if skip || !isTerminal(cmd.InOrStdin()) {
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(cmd.ErrOrStderr())
		return errAborted
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errAborted
}

// Flag checks shared by the commands; each failure is a usage error.

func checkFeedID(id string, required bool) error {
	if id == "" {
		if required {
			return usageError("--changefeed-id (-c) is required")
		}
		return nil
	}
	if err := model.ValidateChangefeedID(id); err != nil {
		return usageError("--changefeed-id: %v", err)
	}
	return nil
}

func checkNodeID(flag, id string) error {
	if err := model.ValidateNodeID(id); err != nil {
		return usageError("%s: %v", flag, err)
	}
	return nil
}

// serverNow is the cluster's idea of now, so that "now" does not depend on
// the clock of the machine ctl runs on.
func serverNow(ctx context.Context, c *ctl.Client) (model.Ts, error) {
	t, err := c.TSO(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the current TSO: %w", err)
	}
	return t.TSO, nil
}

// parseTsArg parses a ts flag: a TSO number, "now" or an RFC 3339 time.
// isNow reports "now", which the caller resolves against the server.
func parseTsArg(flag, v string) (ts model.Ts, isNow bool, err error) {
	if v == "now" {
		return 0, true, nil
	}
	ts, err = parseTs(flag, v)
	return ts, false, err
}
