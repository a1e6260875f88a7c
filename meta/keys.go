package meta

import (
	"fmt"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// Metadata keys. The FSM stores one flat, ordered key space so that any
// subtree can be read or watched by prefix, the way TiCDC used etcd.
const (
	PrefixCapture          = "/capture/"
	PrefixChangefeedInfo   = "/changefeed/info/"
	PrefixChangefeedStatus = "/changefeed/status/"
	PrefixChangefeedTables = "/changefeed/tables/"
	PrefixTaskStatus       = "/task/status/"
	PrefixTaskPosition     = "/task/position/"
	PrefixTaskWorkload     = "/task/workload/"
	PrefixGC               = "/gc/"
	PrefixDrain            = "/drain/"
	KeyOwner               = "/owner"
	KeyCluster             = "/cluster"
	PrefixUser             = "/kv/" // free-form keys for tests and benchmarks
)

func CaptureKey(id model.CaptureID) string             { return PrefixCapture + id }
func ChangefeedInfoKey(id model.ChangefeedID) string   { return PrefixChangefeedInfo + id }
func ChangefeedStatusKey(id model.ChangefeedID) string { return PrefixChangefeedStatus + id }
func ChangefeedTablesKey(id model.ChangefeedID) string { return PrefixChangefeedTables + id }
func TaskStatusKey(cf model.ChangefeedID, c model.CaptureID) string {
	return PrefixTaskStatus + cf + "/" + c
}
func TaskPositionKey(cf model.ChangefeedID, c model.CaptureID) string {
	return PrefixTaskPosition + cf + "/" + c
}
func TaskWorkloadKey(cf model.ChangefeedID, c model.CaptureID) string {
	return PrefixTaskWorkload + cf + "/" + c
}
func TaskStatusPrefix(cf model.ChangefeedID) string   { return PrefixTaskStatus + cf + "/" }
func TaskPositionPrefix(cf model.ChangefeedID) string { return PrefixTaskPosition + cf + "/" }
func TaskWorkloadPrefix(cf model.ChangefeedID) string { return PrefixTaskWorkload + cf + "/" }
func GCKey(id string) string                          { return PrefixGC + id }
func DrainKey(c model.CaptureID) string               { return PrefixDrain + c }

// Kind is what a key holds.
type Kind string

const (
	KindCapture          Kind = "capture"
	KindChangefeedInfo   Kind = "changefeed_info"
	KindChangefeedStatus Kind = "changefeed_status"
	KindChangefeedTables Kind = "changefeed_tables"
	KindTaskStatus       Kind = "task_status"
	KindTaskPosition     Kind = "task_position"
	KindTaskWorkload     Kind = "task_workload"
	KindGC               Kind = "gc"
	KindDrain            Kind = "drain"
	KindOwner            Kind = "owner"
	KindCluster          Kind = "cluster"
	KindUser             Kind = "user"
)

// Key is a parsed metadata key.
type Key struct {
	Kind Kind
	// Changefeed is set for changefeed and task keys.
	Changefeed model.ChangefeedID
	// Capture is set for capture and task keys.
	Capture model.CaptureID
	// Name is the rest of a /gc/ or /kv/ key.
	Name string
}

var prefixKinds = []struct {
	prefix string
	kind   Kind
}{
	{PrefixCapture, KindCapture},
	{PrefixChangefeedInfo, KindChangefeedInfo},
	{PrefixChangefeedStatus, KindChangefeedStatus},
	{PrefixChangefeedTables, KindChangefeedTables},
	{PrefixTaskStatus, KindTaskStatus},
	{PrefixTaskPosition, KindTaskPosition},
	{PrefixTaskWorkload, KindTaskWorkload},
	{PrefixGC, KindGC},
	{PrefixDrain, KindDrain},
	{PrefixUser, KindUser},
}

// ParseKey tells what a key is. A key outside the schema, or one whose
// parts are missing (a task key without a capture), is an error.
func ParseKey(key string) (Key, error) {
	switch key {
	case KeyOwner:
		return Key{Kind: KindOwner}, nil
	case KeyCluster:
		return Key{Kind: KindCluster}, nil
	}
	for _, pk := range prefixKinds {
		rest, ok := strings.CutPrefix(key, pk.prefix)
		if !ok {
			continue
		}
		k := Key{Kind: pk.kind}
		switch pk.kind {
		case KindCapture, KindDrain:
			k.Capture = rest
		case KindChangefeedInfo, KindChangefeedStatus, KindChangefeedTables:
			k.Changefeed = rest
		case KindTaskStatus, KindTaskPosition, KindTaskWorkload:
			cf, c, ok := strings.Cut(rest, "/")
			if !ok || cf == "" || c == "" || strings.Contains(c, "/") {
				return Key{}, fmt.Errorf("key %q is not %s<changefeed>/<capture>", key, pk.prefix)
			}
			k.Changefeed, k.Capture = cf, c
			return k, nil
		default:
			k.Name = rest
			if rest == "" {
				return Key{}, fmt.Errorf("key %q has nothing after %s", key, pk.prefix)
			}
			return k, nil
		}
		if rest == "" || strings.Contains(rest, "/") {
			return Key{}, fmt.Errorf("key %q is not %s<id>", key, pk.prefix)
		}
		return k, nil
	}
	return Key{}, fmt.Errorf("key %q is outside the metadata key space", key)
}
