// Package kafka is the Kafka sink: kafka://host:port[,host:port]/topic with
// TiCDC's parameters, dispatchers and protocols, on franz-go. See DESIGN.md.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/sink"
)

// recordOverhead is what Kafka adds around one record's key and value in a
// batch of one (batch header, record header, varints), rounded up, so that
// a message we let through fits the topic's max.message.bytes.
const recordOverhead = 128

type options struct {
	log           zerolog.Logger
	metrics       *Metrics
	changefeed    string
	dispatchers   []model.DispatchRule
	caseSensitive bool
	kgoOpts       []kgo.Opt
}

// Option configures Open.
type Option func(*options)

// WithLogger sets the logger (default: none).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics reports into m (default: unregistered metrics).
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// WithChangefeed names the changefeed, for metrics and logs.
func WithChangefeed(id string) Option { return func(o *options) { o.changefeed = id } }

// WithDispatchers routes tables by the changefeed's dispatcher rules.
func WithDispatchers(rules []model.DispatchRule, caseSensitive bool) Option {
	return func(o *options) { o.dispatchers, o.caseSensitive = rules, caseSensitive }
}

// withKgoOpts adds franz-go options (tests: a short retry backoff).
func withKgoOpts(opts ...kgo.Opt) Option {
	return func(o *options) { o.kgoOpts = append(o.kgoOpts, opts...) }
}

// topicInfo is what the sink learned about a topic when it first used it.
type topicInfo struct {
	partitions int32
	// maxMessageBytes is the largest message the sink sends to it: the
	// smaller of max-message-bytes and the topic's max.message.bytes.
	maxMessageBytes int
	// limitName says which of the two it is, for errors: a user who set
	// max-message-bytes=20MiB must not be told a 1 MiB limit is that.
	limitName string
}

// Sink is one Kafka producer shared by a processor's table sinks and, for
// the owner, its DDL and checkpoint messages.
type Sink struct {
	// values recycles the bytes of row messages (see valueArena).
	values valueArena

	cfg    *Config
	opts   options
	log    zerolog.Logger
	fm     *feedMetrics
	proto  protocol
	route  *router
	claims claimStore
	client *kgo.Client
	admin  *kadm.Client

	// maxMessageBytes is max-message-bytes after checking the default
	// topic: franz-go's batch limit is set to it.
	maxMessageBytes int

	mu     sync.Mutex
	topics map[string]*topicInfo
	// watermarkTopics are the topics checkpoints go to: the default topic,
	// every topic a table or DDL of this sink used, and those of SetTables.
	watermarkTopics map[string]bool
	closed          bool
}

var _ sink.Sink = (*Sink)(nil)

// Open parses the URI, connects, checks (and if allowed creates) the
// default topic, and reads its max.message.bytes. A bad URI, an unreachable
// broker or a missing topic fail here rather than at the first row.
func Open(ctx context.Context, uri string, opts ...Option) (*Sink, error) {
	s, err := openSinkURI(ctx, uri, opts...)
	// Broker and TLS errors do not quote the URI today; this keeps any
	// that ever do from showing the password.
	return s, redact.Error(err, uri)
}

func openSinkURI(ctx context.Context, uri string, opts ...Option) (*Sink, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	o := options{log: zerolog.Nop(), changefeed: "-"}
	for _, f := range opts {
		f(&o)
	}
	if o.metrics == nil {
		o.metrics = NewMetrics(nil)
	}
	s := &Sink{
		cfg: cfg, opts: o, fm: o.metrics.forFeed(o.changefeed),
		log:             o.log.With().Str("sink", "kafka").Str("changefeed", o.changefeed).Logger(),
		topics:          map[string]*topicInfo{},
		watermarkTopics: map[string]bool{cfg.Topic: true},
	}
	if s.route, err = newRouter(cfg.Topic, o.dispatchers, o.caseSensitive); err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	if s.proto, err = newProtocol(cfg); err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	if cfg.LargeMessageHandle == LargeMessageClaimCheck {
		if s.claims, err = newClaimStore(cfg.ClaimCheckStorageURI); err != nil {
			return nil, fmt.Errorf("kafka sink: %w", err)
		}
	}
	base, err := s.clientOpts()
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	// A metadata-only client first: the default topic's own limit decides
	// the producer's batch limit.
	adminClient, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: creating the client: %w", err)
	}
	s.admin = kadm.NewClient(adminClient)
	s.admin.SetTimeoutMillis(int32(cfg.WriteTimeout / time.Millisecond))
	s.maxMessageBytes = cfg.MaxMessageBytes
	ti, err := s.ensureTopic(ctx, cfg.Topic)
	if err != nil {
		adminClient.Close()
		return nil, s.withAuthHint(err)
	}
	s.maxMessageBytes = ti.maxMessageBytes
	prod := append(base,
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(acks(cfg.RequiredAcks)),
		kgo.ProducerBatchMaxBytes(int32(s.maxMessageBytes)),
		// A produce request holds every partition's ready batch; franz-go's
		// default cap is 100 MiB. It builds each request in a buffer from a
		// sync.Pool, which collections empty, so a request that size was
		// grown from 1 KiB again and again: with the broker in its own
		// process, that regrowth was a third of the sink's CPU and capping
		// requests at two batches halved its CPU a message
		// (bench/RESULTS.md, Kafka). Two batches still let a request carry
		// a full batch while another partition's fills.
		kgo.BrokerMaxWriteBytes(int32(min(2*int64(s.maxMessageBytes)+1<<20, 1<<30))), // franz-go allows up to 1 GiB
		kgo.ProduceRequestTimeout(cfg.WriteTimeout),
		kgo.ProducerBatchCompression(compression(cfg.Compression)),
		kgo.WithHooks(batchHook{s.fm}),
		// Retriable errors (leader moves, not enough replicas, timeouts) are
		// retried without limit (franz-go's default, kept on purpose): the
		// changefeed must not fail on them; Flush waits, and its context
		// bounds the wait.
	)
	if cfg.RequiredAcks != -1 {
		// Idempotence needs acks=all. Without it, one request in flight per
		// broker keeps a retried batch from overtaking a later one, which
		// would break per-key order.
		prod = append(prod, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1))
	}
	prod = append(prod, o.kgoOpts...)
	if s.client, err = kgo.NewClient(prod...); err != nil {
		adminClient.Close()
		return nil, fmt.Errorf("kafka sink: creating the producer: %w", err)
	}
	s.log.Info().Strs("brokers", cfg.Brokers).Str("topic", cfg.Topic).Str("protocol", cfg.Protocol).
		Int("max_message_bytes", s.maxMessageBytes).Int32("partitions", ti.partitions).Msg("kafka sink open")
	return s, nil
}

// withAuthHint adds what to check to an error of the sink's first contact
// with the brokers when SASL is on and the error looks like refused
// credentials. Kafka answers them with SASL_AUTHENTICATION_FAILED, but
// some brokers and proxies just close the connection, which franz-go
// reports as a bare EOF that says nothing about the credentials.
func (s *Sink) withAuthHint(err error) error {
	c := s.cfg
	if c.SASLMechanism == "" {
		return err
	}
	if !errors.Is(err, kerr.SaslAuthenticationFailed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	return fmt.Errorf("%w (authenticating with sasl-mechanism=%s as sasl-user=%s: the broker refused the credentials or closed the connection; check sasl-user and sasl-password, and enable-tls if the broker expects TLS)",
		err, c.SASLMechanism, c.SASLUser)
}

// withACLHint says what to grant when the broker's ACLs refused a produce.
// An idempotent producer first asks for a producer ID, which needs
// IDEMPOTENT_WRITE on the cluster (or, since Kafka 2.8, WRITE on any
// topic); refused, franz-go fails every record with
// CLUSTER_AUTHORIZATION_FAILED, which says nothing about idempotence.
// The error stays retryable: once an operator grants the ACL, the
// changefeed's next retry goes through.
func (s *Sink) withACLHint(err error, topic string) error {
	user := "the sink's user"
	if s.cfg.SASLUser != "" {
		user = "sasl-user=" + s.cfg.SASLUser
	}
	switch {
	case errors.Is(err, kerr.ClusterAuthorizationFailed) && s.cfg.RequiredAcks == -1:
		return fmt.Errorf("%w (the broker refused %s an idempotent producer: grant it WRITE on topic %s, or IDEMPOTENT_WRITE on the cluster for brokers before Kafka 2.8; required-acks=1 produces without idempotence, one request in flight per broker)", err, user, topic)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Errorf("%w (grant %s WRITE and DESCRIBE on topic %s)", err, user, topic)
	}
	return err
}

func (s *Sink) clientOpts() ([]kgo.Opt, error) {
	c := s.cfg
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.DialTimeout(c.DialTimeout),
		kgo.RequestTimeoutOverhead(c.ReadTimeout),
		kgo.RetryTimeout(c.WriteTimeout + c.ReadTimeout),
		// A new topic (a table's first row, a create-table DDL) must be
		// usable at once, not after franz-go's default 5 s metadata floor.
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			d := time.Duration(tries) * 50 * time.Millisecond
			if d > time.Second {
				d = time.Second
			}
			return d
		}),
	}
	switch c.SASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism()))
	}
	if c.EnableTLS {
		tc := &tls.Config{InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if c.CA != "" {
			pem, err := os.ReadFile(c.CA)
			if err != nil {
				return nil, fmt.Errorf("reading ca %s: %w", c.CA, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca %s holds no PEM certificate", c.CA)
			}
			tc.RootCAs = pool
		}
		if c.Cert != "" {
			pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
			if err != nil {
				return nil, fmt.Errorf("loading cert %s and key %s: %w", c.Cert, c.Key, err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

func acks(n int16) kgo.Acks {
	switch n {
	case 0:
		return kgo.NoAck()
	case 1:
		return kgo.LeaderAck()
	}
	return kgo.AllISRAcks()
}

func compression(name string) kgo.CompressionCodec {
	switch name {
	case "lz4":
		return kgo.Lz4Compression()
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	return kgo.NoCompression()
}

// ensureTopic returns what the sink knows of a topic, creating the topic
// if it is missing and auto-create-topic allows, and reading its partition
// count and max.message.bytes.
func (s *Sink) ensureTopic(ctx context.Context, topic string) (*topicInfo, error) {
	s.mu.Lock()
	ti, ok := s.topics[topic]
	s.mu.Unlock()
	if ok {
		return ti, nil
	}
	details, err := s.admin.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: reading metadata of topic %s from %v: %w", topic, s.cfg.Brokers, err)
	}
	d, exists := details[topic]
	if exists && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("kafka sink: topic %s: %w", topic, d.Err)
	}
	if !exists || d.Err != nil {
		if !s.cfg.AutoCreateTopic {
			return nil, fmt.Errorf("kafka sink: topic %s does not exist and auto-create-topic=false", topic)
		}
		parts := s.cfg.PartitionNum
		if parts == 0 {
			parts = -1 // the broker's default
		}
		mmb := strconv.Itoa(s.cfg.MaxMessageBytes)
		resp, err := s.admin.CreateTopic(ctx, parts, s.cfg.ReplicationFactor, map[string]*string{"max.message.bytes": &mmb}, topic)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return nil, fmt.Errorf("kafka sink: creating topic %s (%d partitions, replication factor %d): %w", topic, parts, s.cfg.ReplicationFactor, err)
		}
		s.log.Info().Str("topic", topic).Int32("partitions", parts).Msg("created topic")
		// Metadata reaches every broker (and the client's cache) a little
		// after the create: poll until the topic shows, within write-timeout.
		deadline := time.Now().Add(s.cfg.WriteTimeout)
		for {
			if details, err = s.admin.ListTopics(ctx, topic); err != nil {
				return nil, fmt.Errorf("kafka sink: reading metadata of new topic %s: %w", topic, err)
			}
			d = details[topic]
			if d.Err == nil && len(d.Partitions) > 0 {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("kafka sink: new topic %s did not appear in metadata within write-timeout=%v: %v", topic, s.cfg.WriteTimeout, d.Err)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("kafka sink: waiting for new topic %s: %w", topic, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	n := int32(len(d.Partitions))
	if n == 0 {
		return nil, fmt.Errorf("kafka sink: topic %s has no partitions", topic)
	}
	if s.cfg.PartitionNum > n {
		return nil, fmt.Errorf("kafka sink: partition-num=%d but topic %s has only %d partitions; lower partition-num or add partitions to the topic", s.cfg.PartitionNum, topic, n)
	}
	limit, err := s.topicMaxMessageBytes(ctx, topic)
	if err != nil {
		return nil, err
	}
	ti = &topicInfo{partitions: n, maxMessageBytes: s.maxMessageBytes, limitName: fmt.Sprintf("max-message-bytes=%d", s.maxMessageBytes)}
	if limit < ti.maxMessageBytes {
		if topic != s.cfg.Topic || s.client != nil {
			return nil, fmt.Errorf("kafka sink: topic %s accepts messages up to %d bytes (max.message.bytes), below this sink's max-message-bytes=%d; raise the topic's max.message.bytes or lower max-message-bytes", topic, limit, s.maxMessageBytes)
		}
		s.log.Warn().Str("topic", topic).Int("topic_max_message_bytes", limit).Int("max_message_bytes", s.cfg.MaxMessageBytes).
			Msg("the topic's max.message.bytes is below max-message-bytes; using the topic's")
		ti.maxMessageBytes = limit
		ti.limitName = fmt.Sprintf("topic %s's max.message.bytes=%d", topic, limit)
	}
	s.mu.Lock()
	if prev, ok := s.topics[topic]; ok {
		ti = prev
	} else {
		s.topics[topic] = ti
	}
	s.mu.Unlock()
	return ti, nil
}

// topicMaxMessageBytes reads the topic's max.message.bytes (the topic's
// own setting or the broker default it inherits).
func (s *Sink) topicMaxMessageBytes(ctx context.Context, topic string) (int, error) {
	rcs, err := s.admin.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("kafka sink: reading the configuration of topic %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return 0, fmt.Errorf("kafka sink: reading the configuration of topic %s: %w", topic, err)
	}
	if rc.Err != nil {
		return 0, fmt.Errorf("kafka sink: reading the configuration of topic %s: %w", topic, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			n, err := strconv.Atoi(*c.Value)
			if err != nil {
				return 0, fmt.Errorf("kafka sink: topic %s has max.message.bytes %q, not a number", topic, *c.Value)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("kafka sink: topic %s did not report max.message.bytes", topic)
}

// SetTables tells the sink every table of the changefeed, so that a
// checkpoint reaches the topics of tables this instance has not opened
// (the owner's sink opens none). TiCDC passes the tables with every
// checkpoint; here the owner calls this when the table set changes.
func (s *Sink) SetTables(tables []model.TableName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tables {
		s.watermarkTopics[s.route.route(t).topic] = true
	}
}

// produceAll sends one message to every partition of each topic and waits
// for the acknowledgements.
func (s *Sink) produceAll(ctx context.Context, what string, topics []string, key, value []byte) error {
	var recs []*kgo.Record
	for _, t := range topics {
		ti, err := s.ensureTopic(ctx, t)
		if err != nil {
			return err
		}
		if len(key)+len(value)+recordOverhead > ti.maxMessageBytes {
			return fmt.Errorf("kafka sink: %s message of %d bytes is over topic %s's limit of %d bytes", what, len(key)+len(value), t, ti.maxMessageBytes)
		}
		for p := int32(0); p < ti.partitions; p++ {
			recs = append(recs, &kgo.Record{Topic: t, Partition: p, Key: key, Value: value})
		}
	}
	start := time.Now()
	// Not ProduceSync: a record franz-go has buffered waits for its broker
	// past the context (a node shutting down with its broker gone waited
	// out the whole shutdown budget in the owner's checkpoint publish).
	// The caller's deadline bounds the wait here; records still in flight
	// then complete or fail on their own.
	errc := make(chan error, len(recs))
	fm := s.fm
	for _, r := range recs {
		s.client.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err == nil {
				// Counted and timed a message, as table sinks do, so that
				// the latency histogram's count is the message count.
				fm.latency.Observe(time.Since(start).Seconds())
				fm.messages.Inc()
				fm.bytes.Add(float64(len(r.Key) + len(r.Value)))
			}
			if err != nil {
				err = s.withACLHint(err, r.Topic)
			}
			errc <- err
		})
	}
	for range recs {
		var err error
		select {
		case err = <-errc:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("kafka sink: sending the %s to %v: %w", what, topics, err)
		}
	}
	return nil
}

// EmitDDL sends the DDL to every partition of the topics of the tables it
// touches (before and after it), or of the default topic for a schema-level
// DDL, so that every consumer of a partition sees it in order with the rows.
// Sending it again after an owner failover is harmless to consumers, which
// see the same commit ts.
func (s *Sink) EmitDDL(ctx context.Context, ddl *model.DDLEvent) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	key, value, err := s.proto.encodeDDL(ctx, ddl)
	if err != nil {
		return fmt.Errorf("kafka sink: encoding DDL %s: %w", ddl, err)
	}
	set := map[string]bool{}
	for _, t := range ddl.Tables {
		set[s.route.route(t).topic] = true
	}
	for _, sc := range ddl.After {
		if sc != nil {
			set[s.route.route(sc.Table).topic] = true
		}
	}
	if len(set) == 0 {
		set[s.cfg.Topic] = true
	}
	topics := sortedTopics(set)
	s.mu.Lock()
	for _, t := range topics {
		s.watermarkTopics[t] = true
	}
	s.mu.Unlock()
	return s.produceAll(ctx, "DDL "+ddl.String(), topics, key, value)
}

// EmitCheckpoint sends a watermark (resolved event) with ts to every
// partition of every topic the changefeed writes, when the protocol has
// one: a consumer that has seen it on all partitions knows it has every
// row at or below ts, and can order across partitions.
func (s *Sink) EmitCheckpoint(ctx context.Context, ts model.Ts) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	key, value, ok := s.proto.encodeWatermark(ts)
	if !ok {
		return nil
	}
	s.mu.Lock()
	topics := sortedTopics(s.watermarkTopics)
	s.mu.Unlock()
	return s.produceAll(ctx, fmt.Sprintf("watermark %d", ts), topics, key, value)
}

func sortedTopics(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func (s *Sink) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("kafka sink is closed")
	}
	return nil
}

// OpenTable routes the table, makes sure its topic exists and learns its
// partition count.
func (s *Sink) OpenTable(ctx context.Context, table model.TableName, opts sink.TableOptions) (sink.TableSink, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	rt := s.route.route(table)
	ti, err := s.ensureTopic(ctx, rt.topic)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", table, err)
	}
	s.mu.Lock()
	s.watermarkTopics[rt.topic] = true
	s.mu.Unlock()
	tctx, cancel := context.WithCancel(context.Background())
	return &tableSink{s: s, table: table, topic: rt.topic, info: ti, part: newPartitioner(rt, table), ctx: tctx, cancel: cancel}, nil
}

// Close stops the producer; messages not yet acknowledged are abandoned
// (they were not flushed, so nothing counted them as written).
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.client != nil {
		s.client.Close()
	}
	s.admin.Close()
	return nil
}
