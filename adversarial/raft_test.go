package adversarial

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftcdc/raftcdc/fsm"
	"github.com/raftcdc/raftcdc/meta"
	"github.com/rs/zerolog"
)

// attackerStream is a Raft stream layer for the attacker's own transport:
// it listens on its own loopback address and dials either in plaintext or
// over TLS with whatever client configuration the attacker has.
type attackerStream struct {
	net.Listener
	tls *tls.Config // nil: plaintext
}

func (s *attackerStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	if s.tls == nil {
		return d.Dial("tcp", string(addr))
	}
	return tls.DialWithDialer(d, "tcp", string(addr), s.tls)
}

// attacker is hashicorp/raft's own NetworkTransport in hostile hands: what it
// sends is byte for byte what a real peer sends.
func newAttacker(t *testing.T, tlsConf *tls.Config) *raft.NetworkTransport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &attackerStream{Listener: ln, tls: tlsConf}, MaxPool: 1, Timeout: 3 * time.Second, Logger: nil,
	})
	t.Cleanup(func() { tr.Close() })
	return tr
}

const forgedKey = meta.PrefixUser + "forged-by-attacker"

func forgedCommand(t *testing.T) []byte {
	t.Helper()
	b, err := fsm.Encode(fsm.Command{Ops: []fsm.Op{{Type: fsm.OpPut, Key: forgedKey, Value: []byte(`"pwned"`)}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bufferSink collects a snapshot in memory.
type bufferSink struct{ bytes.Buffer }

func (*bufferSink) ID() string    { return "forged" }
func (*bufferSink) Cancel() error { return nil }
func (*bufferSink) Close() error  { return nil }

// forgedSnapshot is a well-formed state-machine snapshot, made by the
// product's own FSM, that holds only the attacker's key.
func forgedSnapshot(t *testing.T) []byte {
	t.Helper()
	f, err := fsm.Open(filepath.Join(t.TempDir(), "forged.db"), fsm.Options{Logger: zerolog.Nop(), Rules: meta.Rules{}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Apply(&raft.Log{Index: 1 << 40, Term: 1 << 20, Type: raft.LogCommand, Data: forgedCommand(t)})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	return sink.Bytes()
}

// forge sends one kind of forged RPC to node target of the cluster, with
// everything a real peer would put in it, and returns the transport's error.
func (s *secured) forge(t *testing.T, tr *raft.NetworkTransport, kind string, target int) error {
	t.Helper()
	leader := s.WaitForLeader(10 * time.Second)
	st := s.Node(target).Status()
	ls := s.Node(leader).Status()
	leaderAddr := []byte(s.Node(leader).Config().AdvertiseRaftAddr)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(ls.NodeID), Addr: leaderAddr}
	id := raft.ServerID(st.NodeID)
	addr := raft.ServerAddress(s.Node(target).Config().AdvertiseRaftAddr)
	switch kind {
	case "AppendEntries":
		// One entry right after the follower's last, in the current term,
		// committed at once: a follower that accepts it applies it.
		req := &raft.AppendEntriesRequest{RPCHeader: hdr, Term: st.Term, PrevLogEntry: st.LastIndex, PrevLogTerm: st.Term,
			Entries:           []*raft.Log{{Index: st.LastIndex + 1, Term: st.Term, Type: raft.LogCommand, Data: forgedCommand(t)}},
			LeaderCommitIndex: st.LastIndex + 1}
		var resp raft.AppendEntriesResponse
		err := tr.AppendEntries(id, addr, req, &resp)
		if err == nil && !resp.Success {
			return fmt.Errorf("append refused by raft itself (term %d, last %d)", resp.Term, resp.LastLog)
		}
		return err
	case "RequestVote":
		// A newer term from a member that claims a leadership transfer: a
		// node that hears it steps down.
		other := s.Node((target + 1) % s.Size())
		vh := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(other.ID()), Addr: []byte(other.Config().AdvertiseRaftAddr)}
		req := &raft.RequestVoteRequest{RPCHeader: vh, Term: st.Term + 1, LastLogIndex: st.LastIndex + 1000, LastLogTerm: st.Term + 1, LeadershipTransfer: true}
		var resp raft.RequestVoteResponse
		return tr.RequestVote(id, addr, req, &resp)
	case "TimeoutNow":
		req := &raft.TimeoutNowRequest{RPCHeader: hdr}
		var resp raft.TimeoutNowResponse
		return tr.TimeoutNow(id, addr, req, &resp)
	case "InstallSnapshot":
		data := forgedSnapshot(t)
		var conf raft.Configuration
		for _, i := range s.Up() {
			n := s.Node(i)
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.ID()), Address: raft.ServerAddress(n.Config().AdvertiseRaftAddr)})
		}
		req := &raft.InstallSnapshotRequest{RPCHeader: hdr, SnapshotVersion: raft.SnapshotVersionMax, Term: st.Term,
			LastLogIndex: st.LastIndex + 1000, LastLogTerm: st.Term, Configuration: raft.EncodeConfiguration(conf),
			ConfigurationIndex: 1, Size: int64(len(data))}
		var resp raft.InstallSnapshotResponse
		err := tr.InstallSnapshot(id, addr, req, &resp, io.NopCloser(bytes.NewReader(data)))
		if err == nil && !resp.Success {
			return fmt.Errorf("snapshot refused by raft itself")
		}
		return err
	}
	t.Fatalf("unknown RPC %s", kind)
	return nil
}

// TestForgedRaftRPCsAreRefused sends each Raft RPC that can change a
// replica — an append, a vote request with a newer term, a TimeoutNow and a
// snapshot — to a cluster running mutual TLS, from an attacker without the
// cluster's certificate: in plaintext, over TLS with no certificate, and
// over TLS with a certificate from another CA. Every one must fail at the
// connection, and afterwards every replica must hold exactly the state it
// held before, under the same leader in the same term.
func TestForgedRaftRPCsAreRefused(t *testing.T) {
	s := startCluster(t, clusterOpts{tls: true})
	rogue := newTestCA(t, "rogue-ca")
	_, _, rogueCert := rogue.issue(t, "rogue")
	attackers := []struct {
		name string
		tls  *tls.Config
	}{
		{"plaintext", nil},
		// The attacker even trusts the cluster's CA, so the server side is
		// what must refuse it.
		{"tls without a certificate", &tls.Config{RootCAs: s.ca.pool(), ServerName: "127.0.0.1"}},
		{"tls with another CA's certificate", &tls.Config{RootCAs: s.ca.pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{rogueCert}}},
	}
	leader := s.WaitForLeader(10 * time.Second)
	follower := (leader + 1) % s.Size()
	before := s.settledHashes(t)

	// The control: the same transport holding a certificate of the cluster's
	// CA reaches Raft (a vote request for a stale term is answered and
	// changes nothing), so the refusals below are the handshake's doing and
	// not a wrong address.
	_, _, member := s.ca.issue(t, "control")
	ctrl := newAttacker(t, &tls.Config{RootCAs: s.ca.pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{member}})
	st := s.Node(follower).Status()
	var vr raft.RequestVoteResponse
	if err := ctrl.RequestVote(raft.ServerID(st.NodeID), raft.ServerAddress(s.Node(follower).Config().AdvertiseRaftAddr),
		&raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}, Term: st.Term - 1}, &vr); err != nil || vr.Granted {
		t.Errorf("control: a stale vote request with the cluster's certificate: err %v, granted %v", err, vr.Granted)
	}
	ctrl.Close()
	views := s.raftViews()
	for _, a := range attackers {
		for _, kind := range []string{"AppendEntries", "RequestVote", "TimeoutNow", "InstallSnapshot"} {
			targets := []int{follower}
			if kind == "RequestVote" {
				targets = append(targets, leader) // a leader would step down
			}
			for _, target := range targets {
				tr := newAttacker(t, a.tls)
				err := s.forge(t, tr, kind, target)
				tr.Close()
				if err == nil {
					t.Errorf("%s %s to %s: accepted", a.name, kind, s.NodeID(target))
				} else {
					t.Logf("%s %s to %s: refused: %v", a.name, kind, s.NodeID(target), err)
				}
			}
		}
	}
	// Give a forged RPC that got through time to show: an election, an
	// applied entry, a restored snapshot.
	time.Sleep(2 * time.Second)
	for _, i := range s.Up() {
		if kv, ok, _ := s.Node(i).FSM().Get(forgedKey); ok {
			t.Errorf("%s holds the forged key: %s", s.NodeID(i), kv.Value)
		}
	}
	if after := s.settledHashes(t); after != before {
		t.Errorf("state hash moved from %s to %s", before, after)
	}
	if after := s.raftViews(); !slices.Equal(after, views) {
		t.Errorf("leader and term moved: before %+v, after %+v", views, after)
	}
}
