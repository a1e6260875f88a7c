package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/nodetls"
	"github.com/raftcdc/raftcdc/sink"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL and TLS against kfake. kfake authenticates PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512 users (kfake.EnableSASL with kfake.Superuser) and listens
// with the tls.Config it is given (kfake.TLS), so requiring a client
// certificate is that config's ClientAuth: every case of the sink's
// security parameters can be shown against it.
//
// One thing kfake does differently from Kafka: refused credentials close
// the connection instead of answering SASL_AUTHENTICATION_FAILED, so the
// client sees only an EOF; the sink's error must still say what to check.

// saslPassword has characters a URI must escape, so the tests also show
// that sasl-password is read unescaped.
const saslPassword = "s3cr&t p@ss"

func saslMechanism(name, user, pass string) sasl.Mechanism {
	switch name {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	}
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

func saslParams(mech, user, pass string) string {
	return "sasl-mechanism=" + mech + "&sasl-user=" + url.QueryEscape(user) + "&sasl-password=" + url.QueryEscape(pass)
}

func TestSASLWithTheRightPasswordDeliversRows(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c := startBroker(t, kfake.EnableSASL(), kfake.Superuser(mech, "alice", saslPassword))
			s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&partition-num=2&"+saslParams(mech, "alice", saslPassword)))
			deliverRows(t, c, s, "cdc", 20, kgo.SASL(saslMechanism(mech, "alice", saslPassword)))
		})
	}
}

func TestSASLWithAWrongPasswordFailsOpenWithoutShowingIt(t *testing.T) {
	const wrong = "not-the-s3cret"
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c := startBroker(t, kfake.EnableSASL(), kfake.Superuser(mech, "alice", saslPassword))
			uri := brokerURI(c, "cdc", "protocol=canal-json&dial-timeout=2s&read-timeout=2s&write-timeout=2s&"+saslParams(mech, "alice", wrong))
			err := openFails(t, uri)
			msg := err.Error()
			for _, want := range []string{"reading metadata of topic cdc", "sasl-mechanism=" + mech, "sasl-user=alice", "check sasl-user and sasl-password"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if strings.Contains(msg, wrong) || strings.Contains(msg, url.QueryEscape(wrong)) {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}
}

// openFails opens uri expecting an error, within a bound that shows the
// sink does not retry a refusal for long.
func openFails(t *testing.T, uri string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	s, err := Open(ctx, uri)
	if err == nil {
		s.Close()
		t.Fatalf("opened; want an error")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("open took %v to fail", d)
	}
	return err
}

// testCA is a certificate authority made for one test (nodetls's, the one
// `raftcdc tools certs` uses), with its certificate written to a PEM file.
type testCA struct {
	dir  string
	ca   *nodetls.CA
	file string
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca, err := nodetls.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{dir: t.TempDir(), ca: ca, pool: x509.NewCertPool()}
	c.pool.AddCert(ca.Cert)
	c.file = writeFile(t, c.dir, name+"-ca.pem", ca.CertPEM())
	return c
}

// issue signs a certificate for 127.0.0.1 and localhost (usable by a
// server and a client) and writes it and its key as PEM files.
func (c *testCA) issue(t *testing.T, name string) (pair tls.Certificate, certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := c.ca.Issue(nodetls.NodeRequest{Name: name, DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, c.dir, name+".pem", certPEM)
	keyFile = writeFile(t, c.dir, name+"-key.pem", keyPEM)
	if pair, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return pair, certFile, keyFile
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsBroker starts kfake serving TLS with a certificate of ca; with
// clientCA set it requires client certificates that clientCA signed.
func tlsBroker(t *testing.T, ca, clientCA *testCA, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	server, _, _ := ca.issue(t, "broker")
	tc := &tls.Config{Certificates: []tls.Certificate{server}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		tc.ClientAuth, tc.ClientCAs = tls.RequireAndVerifyClientCert, clientCA.pool
	}
	return startBroker(t, append([]kfake.Opt{kfake.TLS(tc)}, opts...)...)
}

func TestTLSWithTheBrokersCADeliversRows(t *testing.T) {
	ca := newTestCA(t, "kafka")
	c := tlsBroker(t, ca, nil)
	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&partition-num=2&enable-tls=true&ca="+ca.file))
	deliverRows(t, c, s, "cdc", 20, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.pool}))
}

func TestTLSWithAnotherCAFailsOpenNamingTheCertificateProblem(t *testing.T) {
	ca, other := newTestCA(t, "kafka"), newTestCA(t, "other")
	c := tlsBroker(t, ca, nil)
	err := openFails(t, brokerURI(c, "cdc", "protocol=canal-json&dial-timeout=2s&read-timeout=2s&write-timeout=2s&enable-tls=true&ca="+other.file))
	if msg := err.Error(); !strings.Contains(msg, "reading metadata of topic cdc") || !strings.Contains(msg, "certificate signed by unknown authority") {
		t.Fatalf("got %q, want the metadata step and the certificate problem", msg)
	}
}

func TestTLSInsecureSkipVerifyDeliversWithoutCA(t *testing.T) {
	ca := newTestCA(t, "kafka")
	c := tlsBroker(t, ca, nil)
	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&partition-num=2&enable-tls=true&insecure-skip-verify=true"))
	deliverRows(t, c, s, "cdc", 20, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.pool}))
}

// Without insecure-skip-verify and without ca, the system's roots decide:
// a broker with a private CA is refused.
func TestTLSWithoutCAVerifiesAgainstTheSystemRoots(t *testing.T) {
	ca := newTestCA(t, "kafka")
	c := tlsBroker(t, ca, nil)
	err := openFails(t, brokerURI(c, "cdc", "protocol=canal-json&dial-timeout=2s&read-timeout=2s&write-timeout=2s&enable-tls=true"))
	if !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("got %q, want the certificate problem", err)
	}
}

func TestMutualTLSDeliversWithTheClientCertificateAndFailsWithout(t *testing.T) {
	ca, clients := newTestCA(t, "kafka"), newTestCA(t, "clients")
	c := tlsBroker(t, ca, clients)
	pair, certFile, keyFile := clients.issue(t, "raftcdc")
	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&partition-num=2&enable-tls=true&ca="+ca.file+"&cert="+certFile+"&key="+keyFile))
	deliverRows(t, c, s, "cdc", 20, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{pair}}))

	err := openFails(t, brokerURI(c, "cdc", "protocol=canal-json&dial-timeout=2s&read-timeout=2s&write-timeout=2s&enable-tls=true&ca="+ca.file))
	if msg := err.Error(); !strings.Contains(msg, "reading metadata of topic cdc") || !strings.Contains(msg, "certificate required") {
		t.Fatalf("without a client certificate: got %q, want the broker's demand for one", msg)
	}
}

// SASL over TLS (SASL_SSL) is how most managed Kafka services are reached.
func TestSASLOverTLSDeliversRows(t *testing.T) {
	ca := newTestCA(t, "kafka")
	c := tlsBroker(t, ca, nil, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "alice", saslPassword))
	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&partition-num=2&enable-tls=true&ca="+ca.file+"&"+saslParams("SCRAM-SHA-512", "alice", saslPassword)))
	deliverRows(t, c, s, "cdc", 20, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.pool}), kgo.SASL(saslMechanism("SCRAM-SHA-512", "alice", saslPassword)))
}

// TestACLRefusalsSayWhatToGrant: with the broker's ACLs on, a user that may
// read the topic's metadata and configs but not write it is refused at the
// first produce. With required-acks=-1 the refusal comes as
// CLUSTER_AUTHORIZATION_FAILED on the idempotent producer's ID, which
// names neither the topic nor idempotence; the sink's error says what to
// grant, both ways. A user with WRITE on the topic gets an idempotent
// producer (Kafka 2.8's rule, which kfake follows) and delivers.
func TestACLRefusalsSayWhatToGrant(t *testing.T) {
	const mech = "SCRAM-SHA-256"
	allow := func(op kmsg.ACLOperation) kfake.ACL {
		return kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "cdc", Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
	}
	c := startBroker(t, kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser(mech, "admin", saslPassword),
		kfake.User(mech, "reader", saslPassword, allow(kmsg.ACLOperationDescribe), allow(kmsg.ACLOperationDescribeConfigs)),
		kfake.User(mech, "writer", saslPassword, allow(kmsg.ACLOperationDescribe), allow(kmsg.ACLOperationDescribeConfigs), allow(kmsg.ACLOperationWrite)))
	// The topic exists already: neither user may create it.
	admin, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.SASL(saslMechanism(mech, "admin", saslPassword)))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(testCtx(t), 1, 1, nil, "cdc"); err != nil {
		t.Fatal(err)
	}

	refused := func(params string) error {
		t.Helper()
		s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&"+params+"&"+saslParams(mech, "reader", saslPassword)))
		sc := usersSchema("shop", "users")
		ts := openTable(t, s, sc.Table)
		ctx := testCtx(t)
		err := ts.Write(ctx, []*model.Txn{{CommitTs: 100, StartTs: 99, Rows: []*model.RowChange{userRow(sc, model.OpInsert, 100, 1, 1, "x")}}})
		if err == nil {
			err = ts.Flush(ctx, 100)
		}
		if err == nil {
			t.Fatalf("%s: a user without WRITE produced", params)
		}
		if sink.IsUnretryable(err) {
			t.Errorf("%s: an ACL refusal is marked unretryable; granting the ACL must let the next retry through", params)
		}
		if strings.Contains(err.Error(), saslPassword) {
			t.Errorf("%s: the error shows the password", params)
		}
		return err
	}
	err = refused("required-acks=-1")
	for _, want := range []string{"CLUSTER_AUTHORIZATION_FAILED", "refused sasl-user=reader an idempotent producer", "WRITE on topic cdc", "IDEMPOTENT_WRITE on the cluster", "required-acks=1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("idempotent refusal %q does not contain %q", err, want)
		}
	}
	err = refused("required-acks=1")
	for _, want := range []string{"TOPIC_AUTHORIZATION_FAILED", "grant sasl-user=reader WRITE and DESCRIBE on topic cdc"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("topic refusal %q does not contain %q", err, want)
		}
	}

	s := openSink(t, brokerURI(c, "cdc", "protocol=canal-json&"+saslParams(mech, "writer", saslPassword)))
	deliverRows(t, c, s, "cdc", 5, kgo.SASL(saslMechanism(mech, "admin", saslPassword)))
}
