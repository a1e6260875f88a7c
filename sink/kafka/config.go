package kafka

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftcdc/raftcdc/internal/redact"
	"github.com/raftcdc/raftcdc/model"
)

// Scheme is the URI scheme of this sink.
const Scheme = "kafka"

// Protocols.
const (
	ProtocolCanalJSON = "canal-json"
	ProtocolDebezium  = "debezium"
	ProtocolOpen      = "open-protocol"
	ProtocolAvro      = "avro"
	ProtocolSimple    = "simple"
)

// Large-message handling, as TiCDC spells it.
const (
	LargeMessageNone          = "none"
	LargeMessageHandleKeyOnly = "handle-key-only"
	LargeMessageClaimCheck    = "claim-check"
)

// DefaultMaxMessageBytes is TiCDC's default for max-message-bytes.
const DefaultMaxMessageBytes = 10 << 20

// Config is a parsed kafka:// sink URI.
type Config struct {
	Brokers []string
	// Topic is the default topic: where tables no dispatcher routes go, and
	// where schema-level DDLs go.
	Topic    string
	Protocol string

	// PartitionNum is the partition count of topics the sink creates; 0
	// means the broker's default. An existing topic keeps its own count,
	// which must be at least PartitionNum.
	PartitionNum      int32
	ReplicationFactor int16
	MaxMessageBytes   int
	// Compression is none, lz4, gzip, snappy or zstd.
	Compression     string
	RequiredAcks    int16
	AutoCreateTopic bool
	ClientID        string
	DialTimeout     time.Duration
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration

	SASLMechanism string // "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	SASLUser      string
	SASLPassword  string

	EnableTLS          bool
	CA, Cert, Key      string // file paths
	InsecureSkipVerify bool

	EnableTiDBExtension bool
	// MaxBatchSize is how many events one open-protocol message holds.
	MaxBatchSize int

	LargeMessageHandle   string
	ClaimCheckStorageURI string

	SchemaRegistry             string
	AvroDecimalHandlingMode    string // precise | string
	AvroBigintUnsignedHandling string // long | string
	// DebeziumDisableSchema leaves the schema part out of Debezium's
	// envelope (TiCDC's debezium-disable-schema).
	DebeziumDisableSchema bool
	// KafkaVersion is accepted for TiCDC compatibility; franz-go negotiates
	// versions with the broker, so it is only checked for shape.
	KafkaVersion string
}

// param is one URI parameter: its name, the values it takes (for errors)
// and how it is applied.
type param struct {
	name  string
	takes string
	set   func(c *Config, v string) error
}

func boolParam(name string, dst func(*Config) *bool) param {
	return param{name, "true or false", func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("not a boolean")
		}
		*dst(c) = b
		return nil
	}}
}

func durationParam(name string, dst func(*Config) *time.Duration) param {
	return param{name, "a duration such as 10s or 500ms, above 0", func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("not a positive duration")
		}
		*dst(c) = d
		return nil
	}}
}

func oneOf(name string, values []string, fold bool, dst func(*Config) *string) param {
	return param{name, strings.Join(values, ", "), func(c *Config, v string) error {
		for _, x := range values {
			if v == x || (fold && strings.EqualFold(v, x)) {
				*dst(c) = x
				return nil
			}
		}
		return fmt.Errorf("not one of the known values")
	}}
}

func fileParam(name string, dst func(*Config) *string) param {
	return param{name, "the path of a readable PEM file", func(c *Config, v string) error {
		if _, err := os.Stat(v); err != nil {
			return fmt.Errorf("cannot read it: %v", err)
		}
		*dst(c) = v
		return nil
	}}
}

var params = []param{
	{"protocol", "canal-json, debezium, open-protocol, avro, simple", func(c *Config, v string) error {
		switch v {
		case ProtocolCanalJSON, ProtocolDebezium, ProtocolOpen, ProtocolAvro, ProtocolSimple:
			c.Protocol = v
			return nil
		case "default":
			c.Protocol = ProtocolOpen
			return nil
		}
		return fmt.Errorf("not a known protocol")
	}},
	{"partition-num", "an integer from 1 to 100000", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return fmt.Errorf("out of range")
		}
		c.PartitionNum = int32(n)
		return nil
	}},
	{"replication-factor", "an integer from 1 to 32767", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 32767 {
			return fmt.Errorf("out of range")
		}
		c.ReplicationFactor = int16(n)
		return nil
	}},
	{"max-message-bytes", "a byte count from 1024 to 1073741824", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1024 || n > 1<<30 {
			return fmt.Errorf("out of range")
		}
		c.MaxMessageBytes = n
		return nil
	}},
	oneOf("compression", []string{"none", "lz4", "gzip", "snappy", "zstd"}, true, func(c *Config) *string { return &c.Compression }),
	{"required-acks", "-1 (all in-sync replicas), 0 (none) or 1 (the leader)", func(c *Config, v string) error {
		switch v {
		case "-1", "0", "1":
			n, _ := strconv.Atoi(v)
			c.RequiredAcks = int16(n)
			return nil
		}
		return fmt.Errorf("not a known value")
	}},
	boolParam("auto-create-topic", func(c *Config) *bool { return &c.AutoCreateTopic }),
	{"kafka-client-id", "letters, digits, '.', '_' and '-'", func(c *Config, v string) error {
		if v == "" {
			return fmt.Errorf("empty")
		}
		for _, r := range v {
			if !model.IsTopicChar(r) {
				return fmt.Errorf("character %q is not allowed", r)
			}
		}
		c.ClientID = v
		return nil
	}},
	durationParam("dial-timeout", func(c *Config) *time.Duration { return &c.DialTimeout }),
	durationParam("read-timeout", func(c *Config) *time.Duration { return &c.ReadTimeout }),
	durationParam("write-timeout", func(c *Config) *time.Duration { return &c.WriteTimeout }),
	oneOf("sasl-mechanism", []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, true, func(c *Config) *string { return &c.SASLMechanism }),
	{"sasl-user", "a user name", func(c *Config, v string) error { c.SASLUser = v; return nil }},
	{"sasl-password", "a password", func(c *Config, v string) error { c.SASLPassword = v; return nil }},
	boolParam("enable-tls", func(c *Config) *bool { return &c.EnableTLS }),
	fileParam("ca", func(c *Config) *string { return &c.CA }),
	fileParam("cert", func(c *Config) *string { return &c.Cert }),
	fileParam("key", func(c *Config) *string { return &c.Key }),
	boolParam("insecure-skip-verify", func(c *Config) *bool { return &c.InsecureSkipVerify }),
	boolParam("enable-tidb-extension", func(c *Config) *bool { return &c.EnableTiDBExtension }),
	{"max-batch-size", "an integer from 1 to 10000", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return fmt.Errorf("out of range")
		}
		c.MaxBatchSize = n
		return nil
	}},
	oneOf("large-message-handle-option", []string{LargeMessageNone, LargeMessageHandleKeyOnly, LargeMessageClaimCheck}, false, func(c *Config) *string { return &c.LargeMessageHandle }),
	{"claim-check-storage-uri", "a file:///absolute/dir URI", func(c *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "file" || u.Host != "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" {
			return fmt.Errorf("not a file:///absolute/dir URI (only file storage is supported so far)")
		}
		c.ClaimCheckStorageURI = v
		return nil
	}},
	{"schema-registry", "an http:// or https:// URL", func(c *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("not an http(s) URL")
		}
		c.SchemaRegistry = v
		return nil
	}},
	oneOf("avro-decimal-handling-mode", []string{"precise", "string"}, false, func(c *Config) *string { return &c.AvroDecimalHandlingMode }),
	oneOf("avro-bigint-unsigned-handling-mode", []string{"long", "string"}, false, func(c *Config) *string { return &c.AvroBigintUnsignedHandling }),
	boolParam("debezium-disable-schema", func(c *Config) *bool { return &c.DebeziumDisableSchema }),
	{"kafka-version", "a version such as 2.4.0", func(c *Config, v string) error {
		parts := strings.Split(v, ".")
		if len(parts) < 2 || len(parts) > 4 {
			return fmt.Errorf("not a version")
		}
		for _, p := range parts {
			if _, err := strconv.Atoi(p); err != nil {
				return fmt.Errorf("not a version")
			}
		}
		c.KafkaVersion = v
		return nil
	}},
}

// ParamNames lists every URI parameter the sink takes, for docs and errors.
func ParamNames() []string {
	out := make([]string, len(params))
	for i, p := range params {
		out[i] = p.name
	}
	sort.Strings(out)
	return out
}

// ParseURI checks a kafka:// URI the way go-sql-driver/mysql checks a DSN:
// every parameter is validated on its own and an error names it; an unknown
// parameter is an error. Nothing is contacted. Errors show the URI with the
// password redacted.
func ParseURI(uri string) (*Config, error) {
	shown := redact.URI(uri)
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("kafka sink URI %s: malformed: %v", shown, redact.Error(err, uri))
	}
	if u.Scheme != Scheme {
		return nil, fmt.Errorf("kafka sink URI %s: scheme must be %q", shown, Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("kafka sink URI %s: user info is not used; give credentials as sasl-user and sasl-password", shown)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("kafka sink URI %s: write kafka://host:port[,host:port]/topic?protocol=...", shown)
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("kafka sink URI %s: a #fragment is not allowed", shown)
	}
	c := &Config{
		ReplicationFactor:          1,
		MaxMessageBytes:            DefaultMaxMessageBytes,
		Compression:                "none",
		RequiredAcks:               -1,
		AutoCreateTopic:            true,
		ClientID:                   "raftcdc",
		DialTimeout:                10 * time.Second,
		ReadTimeout:                10 * time.Second,
		WriteTimeout:               10 * time.Second,
		MaxBatchSize:               16,
		LargeMessageHandle:         LargeMessageNone,
		AvroDecimalHandlingMode:    "precise",
		AvroBigintUnsignedHandling: "long",
	}
	for _, hp := range strings.Split(u.Host, ",") {
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" {
			return nil, fmt.Errorf("kafka sink URI %s: broker %q is not host:port", shown, hp)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("kafka sink URI %s: broker %q has an invalid port", shown, hp)
		}
		c.Brokers = append(c.Brokers, hp)
	}
	c.Topic = strings.TrimPrefix(u.Path, "/")
	if c.Topic == "" {
		return nil, fmt.Errorf("kafka sink URI %s: no topic; write kafka://host:port/topic", shown)
	}
	if err := validTopic(c.Topic); err != nil {
		return nil, fmt.Errorf("kafka sink URI %s: %v", shown, err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("kafka sink URI %s: malformed query: %v", shown, redact.Error(err, uri))
	}
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		var p *param
		for i := range params {
			if params[i].name == name {
				p = &params[i]
				break
			}
		}
		if p == nil {
			return nil, fmt.Errorf("kafka sink URI %s: unknown parameter %q (known: %s)", shown, name, strings.Join(ParamNames(), ", "))
		}
		vs := q[name]
		if len(vs) > 1 {
			return nil, fmt.Errorf("kafka sink URI %s: parameter %s is given %d times", shown, name, len(vs))
		}
		if err := p.set(c, vs[0]); err != nil {
			v := vs[0]
			if name == "sasl-password" {
				v = redact.Mask
			}
			return nil, fmt.Errorf("kafka sink URI %s: parameter %s=%q: %v; it takes %s", shown, name, v, err, p.takes)
		}
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("kafka sink URI %s: %v", shown, err)
	}
	return c, nil
}

// check validates the combinations of parameters.
func (c *Config) check() error {
	if c.Protocol == "" {
		return fmt.Errorf("parameter protocol is required (canal-json, debezium, open-protocol, avro or simple)")
	}
	if (c.SASLUser != "" || c.SASLPassword != "") && c.SASLMechanism == "" {
		return fmt.Errorf("sasl-user and sasl-password need sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
	}
	if c.SASLMechanism != "" && (c.SASLUser == "" || c.SASLPassword == "") {
		return fmt.Errorf("sasl-mechanism=%s needs sasl-user and sasl-password", c.SASLMechanism)
	}
	if !c.EnableTLS && (c.CA != "" || c.Cert != "" || c.Key != "" || c.InsecureSkipVerify) {
		return fmt.Errorf("ca, cert, key and insecure-skip-verify need enable-tls=true")
	}
	if (c.Cert == "") != (c.Key == "") {
		return fmt.Errorf("cert and key go together: give both or neither")
	}
	if c.LargeMessageHandle == LargeMessageClaimCheck && c.ClaimCheckStorageURI == "" {
		return fmt.Errorf("large-message-handle-option=claim-check needs claim-check-storage-uri=file:///dir")
	}
	if c.LargeMessageHandle != LargeMessageClaimCheck && c.ClaimCheckStorageURI != "" {
		return fmt.Errorf("claim-check-storage-uri is only used with large-message-handle-option=claim-check")
	}
	if c.Protocol == ProtocolAvro && c.SchemaRegistry == "" {
		return fmt.Errorf("protocol=avro needs schema-registry=http://host:port")
	}
	if c.Protocol != ProtocolAvro && c.SchemaRegistry != "" {
		return fmt.Errorf("schema-registry is only used with protocol=avro")
	}
	if c.Protocol == ProtocolAvro && c.LargeMessageHandle == LargeMessageClaimCheck {
		return fmt.Errorf("protocol=avro does not support large-message-handle-option=claim-check (use handle-key-only)")
	}
	return nil
}

func validTopic(t string) error {
	if t == "." || t == ".." {
		return fmt.Errorf("topic %q is not allowed by Kafka", t)
	}
	if len(t) > 249 {
		return fmt.Errorf("topic is longer than Kafka's 249 characters")
	}
	for _, r := range t {
		if !model.IsTopicChar(r) {
			return fmt.Errorf("topic %q: character %q is not allowed (letters, digits, '.', '_', '-')", t, r)
		}
	}
	return nil
}
