package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/raftcdc/raftcdc/nodetls"
	"github.com/spf13/cobra"
)

// certName is what may name a certificate's files: a node ID or host name.
var certName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make a cluster CA and node certificates for mutual TLS",
		Long: `A quick secure setup, like consul tls ca create / cert create:

  raftcdc tools tls init --dir certs
  raftcdc tools tls issue --dir certs --name node1 --ip 10.0.0.1
  raftcdc server --tls-cert certs/node1.pem --tls-key certs/node1-key.pem --tls-ca certs/ca.pem ...

Every node gets its own certificate from the one CA; with --tls-ca the nodes
accept only each other on Raft, forwarding and the internal endpoints. Keep
ca-key.pem off the nodes. Existing files are never overwritten.`,
	}
	cmd.AddCommand(newTLSInitCmd(), newTLSIssueCmd())
	return cmd
}

func newTLSInitCmd() *cobra.Command {
	var dir, name string
	var days int
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make a cluster CA: ca.pem and ca-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return usageError("--days must be at least 1, got %d", days)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("creating --dir %s: %w", dir, err)
			}
			ca, err := nodetls.NewCA(name, time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			keyPEM, err := ca.KeyPEM()
			if err != nil {
				return err
			}
			certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
			// The key first: if it cannot be written, no certificate without
			// a key is left behind.
			if err := nodetls.WriteNew(keyFile, keyPEM, 0o600); err != nil {
				return err
			}
			if err := nodetls.WriteNew(certFile, ca.CertPEM(), 0o644); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "CA %q, valid until %s:\n  %s  (give to every node as --tls-ca)\n  %s  (keep it safe and off the nodes)\n",
				name, ca.Cert.NotAfter.UTC().Format(time.DateOnly), certFile, keyFile)
			fmt.Fprintf(out, "Next: raftcdc tools tls issue --dir %s --name <node> [--ip <address>]\n", dir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".", "directory to write ca.pem and ca-key.pem to")
	f.StringVar(&name, "name", "raftcdc cluster CA", "the CA's common name")
	f.IntVar(&days, "days", 5*365, "validity in days")
	return cmd
}

func newTLSIssueCmd() *cobra.Command {
	var dir, name, caFile, caKeyFile string
	var ips, dns []string
	var days int
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Make a node certificate signed by the CA: <name>.pem and <name>-key.pem",
		Long: `Makes a certificate for one node, usable as server and as client (mutual TLS).
Its names are --name, localhost, 127.0.0.1 and every --dns and --ip: nodes do
not check names between themselves (only the CA), but ctl and other clients
of the HTTPS API do, so list the addresses clients use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usageError("--name is required: the node the certificate is for")
			}
			if !certName.MatchString(name) {
				return usageError("--name %q must be 1 to 63 letters, digits, dots, dashes or underscores (it names the files)", name)
			}
			if days < 1 {
				return usageError("--days must be at least 1, got %d", days)
			}
			req := nodetls.NodeRequest{Name: name, DNSNames: append([]string{"localhost"}, dns...), IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Validity: time.Duration(days) * 24 * time.Hour}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usageError("--ip %q is not an IP address", s)
				}
				req.IPs = append(req.IPs, ip)
			}
			if caFile == "" {
				caFile = filepath.Join(dir, "ca.pem")
			}
			if caKeyFile == "" {
				caKeyFile = filepath.Join(dir, "ca-key.pem")
			}
			ca, err := nodetls.LoadCA(caFile, caKeyFile)
			if err != nil {
				return fmt.Errorf("%w (run 'raftcdc tools tls init' first, or pass --ca and --ca-key)", err)
			}
			certPEM, keyPEM, err := ca.Issue(req)
			if err != nil {
				return err
			}
			certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
			if err := nodetls.WriteNew(keyFile, keyPEM, 0o600); err != nil {
				return err
			}
			if err := nodetls.WriteNew(certFile, certPEM, 0o644); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Certificate for %s signed by %q:\n  %s\n  %s\n", name, ca.Cert.Subject.CommonName, certFile, keyFile)
			fmt.Fprintf(out, "Start the node with: --tls-cert %s --tls-key %s --tls-ca %s\n", certFile, keyFile, caFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".", "directory of the CA (by default) and of the new files")
	f.StringVar(&name, "name", "", "node name: the certificate's common name and file names (required)")
	f.StringVar(&caFile, "ca", "", "CA certificate (default <dir>/ca.pem)")
	f.StringVar(&caKeyFile, "ca-key", "", "CA key (default <dir>/ca-key.pem)")
	f.StringArrayVar(&ips, "ip", nil, "an IP address clients use to reach the node (repeatable)")
	f.StringArrayVar(&dns, "dns", nil, "a DNS name clients use to reach the node (repeatable)")
	f.IntVar(&days, "days", 365, "validity in days (never past the CA's)")
	return cmd
}
