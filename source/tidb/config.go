package tidb

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Scheme is the URI scheme of this source. (As a sink, tidb:// is a SQL
// downstream; the two never meet: sources and sinks are parsed apart.)
const Scheme = "tidb"

// Defaults and limits of the URI parameters.
const (
	DefaultKVClientWorkers = 8
	MaxKVClientWorkers     = 256
)

// Config is a parsed tidb:// source URI.
type Config struct {
	// PDAddrs are PD's client addresses, host:port, in the order given.
	PDAddrs []string
	// CA, Cert and Key are PEM files for TLS to PD and TiKV; all empty
	// means plain gRPC.
	CA, Cert, Key string
	// KVClientWorkers is how many goroutines run the region state
	// machines (PREWRITE/COMMIT matching, resolved ts) of the kv client;
	// regions are spread over them by ID.
	KVClientWorkers int
}

const params = "ca, cert, key, kv-client-workers"

func paramErr(name, value, accepted string) error {
	return fmt.Errorf("tidb source URI parameter %q: invalid value %q (accepted: %s)", name, value, accepted)
}

// ParseURI parses tidb://pd1:2379,pd2:2379/?ca=&cert=&key=&kv-client-workers=.
// Unknown and repeated parameters are errors naming the parameter.
func ParseURI(uri string) (*Config, error) {
	rest, ok := strings.CutPrefix(uri, Scheme+"://")
	if !ok {
		return nil, fmt.Errorf("tidb source URI %q: write it as tidb://pd-host:2379[,pd-host2:2379]/?parameters", uri)
	}
	hosts, query := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		hosts = rest[:i]
		tail := rest[i:]
		path, q, _ := strings.Cut(tail, "?")
		if path != "" && path != "/" {
			return nil, fmt.Errorf("tidb source URI %q: has a path %q; a TiDB upstream is the whole cluster, name only PD's addresses", uri, path)
		}
		query = q
	}
	if strings.Contains(hosts, "@") {
		return nil, fmt.Errorf("tidb source URI %q: PD takes no user or password (use ca=, cert= and key= for TLS)", uri)
	}
	if hosts == "" {
		return nil, fmt.Errorf("tidb source URI %q: no PD address; write tidb://pd-host:2379/", uri)
	}
	cfg := &Config{KVClientWorkers: DefaultKVClientWorkers}
	seen := map[string]bool{}
	for _, h := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			return nil, fmt.Errorf("tidb source URI %q: PD address %q is not host:port", uri, h)
		}
		if host == "" {
			return nil, fmt.Errorf("tidb source URI %q: PD address %q has no host", uri, h)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("tidb source URI %q: PD address %q: port %q is not a number from 1 to 65535", uri, h, port)
		}
		if seen[h] {
			return nil, fmt.Errorf("tidb source URI %q: PD address %q is given twice", uri, h)
		}
		seen[h] = true
		cfg.PDAddrs = append(cfg.PDAddrs, h)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("tidb source URI %q: the query string is malformed: %v", uri, err)
	}
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		vals := q[name]
		if len(vals) != 1 {
			return nil, fmt.Errorf("tidb source URI parameter %q is given %d times; give it once", name, len(vals))
		}
		v := vals[0]
		switch name {
		case "ca":
			cfg.CA = v
		case "cert":
			cfg.Cert = v
		case "key":
			cfg.Key = v
		case "kv-client-workers":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxKVClientWorkers {
				return nil, paramErr(name, v, fmt.Sprintf("an integer from 1 to %d", MaxKVClientWorkers))
			}
			cfg.KVClientWorkers = n
		default:
			return nil, fmt.Errorf("tidb source URI parameter %q is unknown (accepted: %s)", name, params)
		}
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return nil, fmt.Errorf("tidb source URI %q: cert and key go together; give both or neither", uri)
	}
	if cfg.Cert != "" && cfg.CA == "" {
		return nil, fmt.Errorf("tidb source URI %q: a client certificate needs ca= too, to check PD's and TiKV's certificates", uri)
	}
	return cfg, nil
}

// TLS reports whether the URI asks for TLS.
func (c *Config) TLS() bool { return c.CA != "" }

// URI is the canonical spelling: PD addresses sorted, parameters in a
// fixed order, defaults left out. Two spellings of one configuration
// share a source.
func (c *Config) URI() string {
	addrs := append([]string(nil), c.PDAddrs...)
	sort.Strings(addrs)
	v := url.Values{}
	if c.CA != "" {
		v.Set("ca", c.CA)
	}
	if c.Cert != "" {
		v.Set("cert", c.Cert)
	}
	if c.Key != "" {
		v.Set("key", c.Key)
	}
	if c.KVClientWorkers != DefaultKVClientWorkers {
		v.Set("kv-client-workers", strconv.Itoa(c.KVClientWorkers))
	}
	s := Scheme + "://" + strings.Join(addrs, ",") + "/"
	if len(v) > 0 {
		s += "?" + v.Encode()
	}
	return s
}
