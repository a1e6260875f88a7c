// Package dashboards holds the Grafana dashboard for raftcdc (raftcdc.json):
// changefeed lag and throughput, Raft health, the owner, captures and
// memory. Import it into Grafana with a Prometheus data source that scrapes
// every node's /metrics.
//
// The test beside it starts a node, and checks that every expression in the
// dashboard names metrics (and labels) the node exports, and that the
// node's exposition passes the same lint `promtool check metrics` runs.
package dashboards

import _ "embed"

// Grafana is the dashboard JSON.
//
//go:embed raftcdc.json
var Grafana []byte
