package model

import (
	"fmt"
	"strings"
)

// Metadata keys. The FSM stores one flat, ordered key space so that any
// subtree can be read or watched by prefix, the way TiCDC used etcd.
const (
	PrefixCapture          = "/capture/"
	PrefixChangefeedInfo   = "/changefeed/info/"
	PrefixChangefeedStatus = "/changefeed/status/"
	PrefixTaskStatus       = "/task/status/"
	PrefixTaskPosition     = "/task/position/"
	PrefixTaskWorkload     = "/task/workload/"
	PrefixGC               = "/gc/"
	KeyOwner               = "/owner"
	PrefixUser             = "/kv/" // free-form keys for tests and benchmarks
)

func CaptureKey(id CaptureID) string                      { return PrefixCapture + id }
func ChangefeedInfoKey(id ChangefeedID) string            { return PrefixChangefeedInfo + id }
func ChangefeedStatusKey(id ChangefeedID) string          { return PrefixChangefeedStatus + id }
func TaskStatusKey(cf ChangefeedID, c CaptureID) string   { return PrefixTaskStatus + cf + "/" + c }
func TaskPositionKey(cf ChangefeedID, c CaptureID) string { return PrefixTaskPosition + cf + "/" + c }
func TaskWorkloadKey(cf ChangefeedID, c CaptureID) string { return PrefixTaskWorkload + cf + "/" + c }
func TaskStatusPrefix(cf ChangefeedID) string             { return PrefixTaskStatus + cf + "/" }
func TaskPositionPrefix(cf ChangefeedID) string           { return PrefixTaskPosition + cf + "/" }
func TaskWorkloadPrefix(cf ChangefeedID) string           { return PrefixTaskWorkload + cf + "/" }
func GCKey(serviceID string) string                       { return PrefixGC + serviceID }

// SplitTaskKey parses "<prefix><changefeed>/<capture>".
func SplitTaskKey(prefix, key string) (ChangefeedID, CaptureID, error) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", "", fmt.Errorf("key %q is not under %q", key, prefix)
	}
	cf, capture, ok := strings.Cut(rest, "/")
	if !ok || cf == "" || capture == "" {
		return "", "", fmt.Errorf("key %q is not <changefeed>/<capture>", key)
	}
	return cf, capture, nil
}
