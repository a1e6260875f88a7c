package ctl

import (
	"crypto/x509"
	"errors"
	"strings"

	"github.com/raftcdc/raftcdc/api"
)

// Hint suggests how to fix an error, or "" when the message already says it
// or nothing useful can be added.
func Hint(err error) string {
	var ce *ConnError
	if errors.As(err, &ce) {
		return "is a raftcdc server running there? Give the API address of any node with --server host:port[,host:port] or RAFTCDC_SERVER."
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) || strings.Contains(err.Error(), "certificate signed by unknown authority") {
		return "pass the CA that signed the server's certificate with --ca FILE."
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return "this server does not use TLS: drop --ca, or start the server with --tls-cert and --tls-key."
	}
	var ae *APIError
	if !errors.As(err, &ae) {
		return ""
	}
	if strings.Contains(ae.Message, "HTTP request to an HTTPS server") {
		return "this server uses TLS: pass --ca FILE, or https:// in --server."
	}
	switch ae.Code {
	case api.CodeUnauthorized:
		return "pass the API token with --token or RAFTCDC_TOKEN."
	case api.CodeNoLeader, api.CodeNotLeader:
		return "the cluster is electing a leader or has lost its quorum; 'raftcdc ctl cluster status' against each node shows what it sees, and reads work without a leader with --consistent=false (that node's own, possibly stale, state)."
	case api.CodeChangefeedNotFound:
		if !strings.Contains(ae.Message, "changefeed list") {
			return "'raftcdc ctl changefeed list --all' lists every changefeed."
		}
	case api.CodeAdminJobPending:
		return "'raftcdc ctl changefeed query -c ID' shows when the owner has carried it out."
	case api.CodeCaptureNotFound:
		if !strings.Contains(ae.Message, "capture list") {
			return "'raftcdc ctl capture list' lists the captures."
		}
	case api.CodeMetadataCorrupt:
		if !strings.Contains(ae.Message, "remove --force") {
			return "'raftcdc ctl changefeed remove --force -c ID' removes a changefeed whose metadata does not decode."
		}
	case api.CodeOverCapacity:
		return "'raftcdc ctl capture list' shows each live capture's table budget and the tables it holds, 'raftcdc ctl changefeed list' the changefeeds that hold them; start nodes with a larger --table-budget only if they can carry it (bench/RESULTS.md says how it was measured)."
	case api.CodeSnapshotLost:
		return "'raftcdc ctl tso' shows the current TSO; a start ts within the upstream's GC life is kept."
	}
	return ""
}
