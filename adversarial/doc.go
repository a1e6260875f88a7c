// Package adversarial holds no product code: its tests play a hostile client
// on the same network as a raftcdc cluster and check that every way in that
// a security review found is closed. There is one test per hole:
//
//   - forged Raft RPCs (AppendEntries, RequestVote, TimeoutNow,
//     InstallSnapshot) from a peer without the cluster's certificate are
//     refused, and no replica's state changes;
//   - writes to the internal endpoints without node credentials are refused,
//     and the API token does not open them;
//   - file-sink directories outside the sink roots are refused at create;
//   - idle connections to the Raft port are closed after the deadline, and
//     one address cannot hold more than its share;
//   - profiling is closed without the API token, and can be switched off;
//   - sloppy JSON (trailing data, duplicate keys, case-mismatched names) and
//     oversized bodies are rejected with a specific status and message;
//   - error answers stay JSON and bounded whatever the request.
//
// The clusters are in-process (testcluster) over real loopback sockets; the
// attacker speaks hashicorp/raft's own wire protocol through its own
// NetworkTransport, so what is refused is exactly what a real peer sends.
package adversarial
