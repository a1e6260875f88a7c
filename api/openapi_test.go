package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/api"
	"github.com/raftcdc/raftcdc/ctl/ctltest"
	"github.com/raftcdc/raftcdc/model"
)

func fetchDoc(t *testing.T, s *ctltest.Server) map[string]any {
	t.Helper()
	resp, err := http.Get(s.HTTP.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET openapi.json: %s", resp.Status)
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// TestOpenAPIMatchesRoutes: the served document lists exactly the routes
// the handler registered after New + EnableCDC + EnableOpenAPI.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	doc := fetchDoc(t, s)
	if doc["openapi"] != "3.0.3" {
		t.Errorf("openapi version %v", doc["openapi"])
	}
	var inDoc []string
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			inDoc = append(inDoc, strings.ToUpper(method)+" "+path)
			o := op.(map[string]any)
			if o["summary"] == "" || o["operationId"] == "" || o["responses"] == nil {
				t.Errorf("%s %s lacks a summary, operationId or responses", method, path)
			}
			// Every path parameter is declared.
			declared := map[string]bool{}
			params, _ := o["parameters"].([]any)
			for _, p := range params {
				pm := p.(map[string]any)
				if pm["in"] == "path" {
					declared[pm["name"].(string)] = true
				}
			}
			for _, seg := range strings.Split(path, "/") {
				if strings.HasPrefix(seg, "{") && !declared[strings.Trim(seg, "{}")] {
					t.Errorf("%s %s: path parameter %s not declared", method, path, seg)
				}
			}
		}
	}
	var registered []string
	for _, r := range s.Handler.Routes {
		// OpenAPI has no {name...}; the document writes it as {name}.
		registered = append(registered, strings.ReplaceAll(r, "...}", "}"))
	}
	sort.Strings(inDoc)
	sort.Strings(registered)
	if !slices.Equal(inDoc, registered) {
		t.Errorf("document and routes differ\ndocument: %v\nroutes:   %v", inDoc, registered)
	}
	// A route registered later is documented too; one without
	// documentation is left out, so the comparison above would catch it.
	if len(s.Handler.Routes) < 25 {
		t.Errorf("only %d routes registered; EnableCDC missing?", len(s.Handler.Routes))
	}
}

// TestOpenAPIOnlyRegistered: without EnableCDC the document does not
// describe changefeed routes the node does not serve.
func TestOpenAPIOnlyRegistered(t *testing.T) {
	st := ctltest.NewStore(t)
	h := api.New(st)
	h.EnableOpenAPI()
	doc := api.OpenAPIDocument(h.Routes, "x")
	if _, ok := doc.Paths["/api/v1/changefeeds"]; ok {
		t.Error("changefeed routes documented without EnableCDC")
	}
	if _, ok := doc.Paths["/api/v1/status"]; !ok {
		t.Error("status route missing")
	}
}

// schemaChecker validates JSON values against the served document's
// schemas, as far as raftcdc's schemas go: types, required properties and no
// undocumented properties.
type schemaChecker struct {
	schemas map[string]any
}

func (c *schemaChecker) check(path string, schema map[string]any, v any) []string {
	if ref, ok := schema["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		s, ok := c.schemas[name].(map[string]any)
		if !ok {
			return []string{path + ": dangling $ref " + ref}
		}
		return c.check(path, s, v)
	}
	if v == nil {
		if schema["nullable"] == true || schema["type"] == nil {
			return nil
		}
		return []string{path + ": null but not nullable"}
	}
	var errs []string
	switch schema["type"] {
	case nil:
		return nil // any value
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want object, got %T", path, v)}
		}
		props, _ := schema["properties"].(map[string]any)
		req, _ := schema["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, path+": required property "+r.(string)+" missing")
			}
		}
		for k, val := range m {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, c.check(path+"."+k, ps, val)...)
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case map[string]any:
				errs = append(errs, c.check(path+"."+k, ap, val)...)
			case bool:
				if !ap {
					errs = append(errs, path+": property "+k+" is not in the document")
				}
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want array, got %T", path, v)}
		}
		items, _ := schema["items"].(map[string]any)
		for i, e := range a {
			errs = append(errs, c.check(path+"["+strconv.Itoa(i)+"]", items, e)...)
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return []string{fmt.Sprintf("%s: want string, got %T", path, v)}
		}
		if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, any(s)) {
			errs = append(errs, fmt.Sprintf("%s: %q is not one of %v", path, s, enum))
		}
		if schema["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				errs = append(errs, path+": not a date-time: "+s)
			}
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok || strings.ContainsAny(n.String(), ".eE") {
			return []string{fmt.Sprintf("%s: want integer, got %v", path, v)}
		}
		if min, ok := schema["minimum"].(json.Number); ok && strings.HasPrefix(n.String(), "-") && min.String() == "0" {
			errs = append(errs, path+": negative")
		}
	case "number":
		if _, ok := v.(json.Number); !ok {
			return []string{fmt.Sprintf("%s: want number, got %T", path, v)}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return []string{fmt.Sprintf("%s: want boolean, got %T", path, v)}
		}
	}
	return errs
}

func decodeNumbers(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// TestResponsesMatchTheDocument calls every route on a fixture and checks
// each answer, success or error, against the schema the document gives for
// that route and status. This is what keeps the document true as the
// handlers change.
func TestResponsesMatchTheDocument(t *testing.T) {
	s := ctltest.NewServer(t, nil)
	fill(t, s)
	raw, err := json.Marshal(api.OpenAPIDocument(s.Handler.Routes, "test"))
	if err != nil {
		t.Fatal(err)
	}
	doc := decodeNumbers(t, raw).(map[string]any)
	c := &schemaChecker{schemas: doc["components"].(map[string]any)["schemas"].(map[string]any)}
	paths := doc["paths"].(map[string]any)

	calls := []struct {
		method, docPath, path string
		body                  any
		status                int
	}{
		{"GET", "/healthz", "/healthz", nil, 200},
		{"GET", "/readyz", "/readyz", nil, 200},
		{"GET", "/api/v1/status", "/api/v1/status", nil, 200},
		{"GET", "/api/v1/cluster/members", "/api/v1/cluster/members", nil, 200},
		{"POST", "/api/v1/cluster/transfer-leader", "/api/v1/cluster/transfer-leader", map[string]string{"to": "node2"}, 200},
		{"POST", "/api/v1/cluster/remove-node", "/api/v1/cluster/remove-node", map[string]string{"id": "node2"}, 200},
		{"POST", "/api/v1/cluster/remove-node", "/api/v1/cluster/remove-node", map[string]string{"id": "node7"}, 404},
		{"PUT", "/api/v1/kv/{key}", "/api/v1/kv/a/b", map[string]int{"x": 1}, 200},
		{"GET", "/api/v1/kv/{key}", "/api/v1/kv/a/b?consistent=true", nil, 200},
		{"GET", "/api/v1/kv/{key}", "/api/v1/kv/none", nil, 404},
		{"POST", "/api/v1/txn", "/api/v1/txn", map[string]any{"ops": []map[string]any{{"type": "put", "key": "c", "value": 2}}}, 200},
		{"DELETE", "/api/v1/kv/{key}", "/api/v1/kv/a/b", nil, 200},
		{"GET", "/api/v1/changefeeds", "/api/v1/changefeeds?all=true", nil, 200},
		{"GET", "/api/v1/changefeeds/{id}", "/api/v1/changefeeds/orders", nil, 200},
		{"GET", "/api/v1/changefeeds/{id}", "/api/v1/changefeeds/nosuch", nil, 404},
		{"GET", "/api/v1/changefeeds/{id}", "/api/v1/changefeeds/bad_id", nil, 400},
		{"POST", "/api/v1/changefeeds", "/api/v1/changefeeds", api.ChangefeedRequest{ID: "new", SourceURI: "datagen://", SinkURI: "blackhole://"}, 201},
		{"POST", "/api/v1/changefeeds", "/api/v1/changefeeds", api.ChangefeedRequest{ID: "new", SourceURI: "datagen://", SinkURI: "blackhole://"}, 409},
		{"POST", "/api/v1/changefeeds", "/api/v1/changefeeds", api.ChangefeedRequest{ID: "new2", SourceURI: "x://", SinkURI: "blackhole://"}, 400},
		{"POST", "/api/v1/changefeeds/preview", "/api/v1/changefeeds/preview",
			api.ChangefeedRequest{ID: "peek", SourceURI: "datagen://", SinkURI: "blackhole://", TargetTs: model.TsFromTime(time.Now().Add(time.Hour))}, 200},
		{"POST", "/api/v1/changefeeds/preview", "/api/v1/changefeeds/preview", api.ChangefeedRequest{SourceURI: "datagen://", SinkURI: "blackhole://"}, 200},
		{"POST", "/api/v1/changefeeds/preview", "/api/v1/changefeeds/preview",
			api.ChangefeedRequest{ID: "peek", SourceURI: "datagen://", SinkURI: "blackhole://", Config: &model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"nope.*"}}}}, 400},
		{"POST", "/api/v1/changefeeds/preview", "/api/v1/changefeeds/preview", api.ChangefeedRequest{ID: "orders", SourceURI: "datagen://", SinkURI: "blackhole://"}, 409},
		{"PUT", "/api/v1/changefeeds/{id}", "/api/v1/changefeeds/paused", api.ChangefeedRequest{SinkURI: "file:///tmp/x"}, 200},
		{"PUT", "/api/v1/changefeeds/{id}", "/api/v1/changefeeds/orders", api.ChangefeedRequest{SinkURI: "file:///tmp/x"}, 409},
		{"POST", "/api/v1/changefeeds/{id}/move-table", "/api/v1/changefeeds/orders/move-table", api.MoveTableRequest{TableID: 1, TargetCapture: "node2"}, 202},
		{"POST", "/api/v1/changefeeds/{id}/rebalance", "/api/v1/changefeeds/orders/rebalance", nil, 202},
		{"POST", "/api/v1/changefeeds/{id}/pause", "/api/v1/changefeeds/orders/pause", nil, 202},
		{"POST", "/api/v1/changefeeds/{id}/resume", "/api/v1/changefeeds/paused/resume", nil, 202},
		{"DELETE", "/api/v1/changefeeds/{id}", "/api/v1/changefeeds/new", nil, 202},
		{"GET", "/api/v1/captures", "/api/v1/captures", nil, 200},
		{"POST", "/api/v1/captures/{id}/drain", "/api/v1/captures/node2/drain", nil, 202},
		{"POST", "/api/v1/captures/{id}/drain", "/api/v1/captures/node9/drain", nil, 404},
		{"GET", "/api/v1/processors", "/api/v1/processors", nil, 200},
		{"GET", "/api/v1/processors/{changefeed}/{capture}", "/api/v1/processors/orders/node1", nil, 200},
		{"GET", "/api/v1/processors/{changefeed}/{capture}", "/api/v1/processors/orders/node9", nil, 404},
		{"GET", "/api/v1/tso", "/api/v1/tso", nil, 200},
		{"GET", "/api/v1/openapi.json", "/api/v1/openapi.json", nil, 200},
		{"GET", "/api/v1/cluster/metadata", "/api/v1/cluster/metadata?prefix=/changefeed/&consistent=true", nil, 200},
		{"GET", "/api/v1/cluster/metadata", "/api/v1/cluster/metadata?prefix=changefeed", nil, 400},
	}
	covered := map[string]bool{}
	for _, call := range calls {
		t.Run(call.method+" "+call.path, func(t *testing.T) {
			var rd io.Reader
			if call.body != nil {
				b, _ := json.Marshal(call.body)
				rd = bytes.NewReader(b)
			}
			req, _ := http.NewRequest(call.method, s.HTTP.URL+call.path, rd)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != call.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, call.status, b)
			}
			op, ok := paths[call.docPath].(map[string]any)[strings.ToLower(call.method)].(map[string]any)
			if !ok {
				t.Fatalf("%s %s is not in the document", call.method, call.docPath)
			}
			covered[call.method+" "+call.docPath] = true
			r, ok := op["responses"].(map[string]any)[strconv.Itoa(call.status)].(map[string]any)
			if !ok {
				t.Fatalf("status %d is not documented for %s %s", call.status, call.method, call.docPath)
			}
			schema := r["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
			for _, e := range c.check("body", schema, decodeNumbers(t, b)) {
				t.Error(e)
			}
			if call.status >= 400 {
				var e api.Error
				_ = json.Unmarshal(b, &e)
				desc := r["description"].(string)
				if !strings.Contains(desc, e.Code) {
					t.Errorf("code %q is not listed for status %d of %s %s (%s)", e.Code, call.status, call.method, call.docPath, desc)
				}
			}
		})
	}
	// Every JSON route of the document was called at least once.
	for path, item := range paths {
		for method := range item.(map[string]any) {
			k := strings.ToUpper(method) + " " + path
			// Answers that are not JSON (metrics, backup streams) have
			// their own tests.
			if !answersJSON(item.(map[string]any)[method]) {
				continue
			}
			if !covered[k] {
				t.Errorf("%s is documented but not exercised by this test", k)
			}
		}
	}
}

// fill is a small fixture: an owner, two captures, a running changefeed
// with one table on node1, and a paused one.
func fill(t *testing.T, s *ctltest.Server) {
	st := s.Store
	t0 := time.Date(2020, 3, 4, 5, 6, 7, 0, time.UTC)
	ts := model.TsFromTime(t0)
	epoch := st.ClaimOwner(t, "node1", t0)
	st.RegisterCapture(t, model.CaptureInfo{ID: "node1", AdvertiseAddr: "127.0.0.1:8300", Version: "test", StartTime: t0})
	st.RegisterCapture(t, model.CaptureInfo{ID: "node2", AdvertiseAddr: "127.0.0.1:8301", Version: "test", StartTime: t0})
	st.PutInfo(t, model.ChangefeedInfo{ID: "orders", SourceURI: "datagen://", SinkURI: "blackhole://", StartTs: ts, State: model.StateNormal, CreateTime: t0})
	st.PutStatus(t, epoch, "orders", model.ChangefeedStatus{CheckpointTs: ts, ResolvedTs: ts, Tables: []model.TableName{{ID: 1, Schema: "datagen", Table: "t0001"}}, Initialized: true,
		Orphans: map[model.TableID]model.Ts{}})
	st.PutTask(t, epoch, "orders", "node1", model.TaskStatus{Tables: map[model.TableID]model.TableReplicaInfo{1: {StartTs: ts}},
		Operations: map[model.TableID]*model.TableOperation{1: {BoundaryTs: ts, Status: model.OperDispatched}}})
	st.PutPosition(t, "orders", "node1", model.TaskPosition{CheckpointTs: ts, ResolvedTs: ts, Running: map[model.TableID]model.Ts{1: ts}, Count: 5,
		Error: &model.RunningError{Code: "x", Message: "y", Time: t0}}, model.TaskWorkload{1: {Workload: 3}})
	st.PutInfo(t, model.ChangefeedInfo{ID: "paused", SourceURI: "datagen://", SinkURI: "blackhole://", StartTs: model.TsFromTime(time.Now()), State: model.StateStopped, CreateTime: t0,
		Config: model.ChangefeedConfig{Filter: model.FilterConfig{Rules: []string{"*.*"}}, Sink: map[string]string{"a": "b"}}})
}

// TestSchemaCheckerCatchesDrift makes sure the check above can fail: an
// undocumented property, a missing required one and a wrong type are all
// reported.
func TestSchemaCheckerCatchesDrift(t *testing.T) {
	raw, _ := json.Marshal(api.OpenAPIDocument([]string{"GET /api/v1/changefeeds"}, "test"))
	doc := decodeNumbers(t, raw).(map[string]any)
	c := &schemaChecker{schemas: doc["components"].(map[string]any)["schemas"].(map[string]any)}
	ref := map[string]any{"$ref": "#/components/schemas/ChangefeedSummary"}
	good := `{"id":"a","state":"normal","source_uri":"s","sink_uri":"k","checkpoint_lag_seconds":1.5,"resolved_lag_seconds":0,"tables":1}`
	if errs := c.check("x", ref, decodeNumbers(t, []byte(good))); len(errs) != 0 {
		t.Fatalf("a valid summary was rejected: %v", errs)
	}
	for _, bad := range []string{
		`{"id":"a","state":"normal","source_uri":"s","sink_uri":"k","checkpoint_lag_seconds":1.5,"resolved_lag_seconds":0,"tables":1,"extra":1}`,
		`{"id":"a","state":"normal","source_uri":"s","sink_uri":"k","checkpoint_lag_seconds":1.5,"tables":1}`,
		`{"id":"a","state":"normal","source_uri":"s","sink_uri":"k","checkpoint_lag_seconds":1.5,"resolved_lag_seconds":0,"tables":"1"}`,
		`{"id":"a","state":"sleeping","source_uri":"s","sink_uri":"k","checkpoint_lag_seconds":1.5,"resolved_lag_seconds":0,"tables":1}`,
		`{"id":"a","state":"normal","source_uri":"s","sink_uri":"k","checkpoint_lag_seconds":1.5,"resolved_lag_seconds":0,"tables":1.5}`,
	} {
		if errs := c.check("x", ref, decodeNumbers(t, []byte(bad))); len(errs) == 0 {
			t.Errorf("not caught: %s", bad)
		}
	}
}

// answersJSON says whether an operation's success answer is JSON.
func answersJSON(op any) bool {
	resps, _ := op.(map[string]any)["responses"].(map[string]any)
	for code, r := range resps {
		if !strings.HasPrefix(code, "2") {
			continue
		}
		content, _ := r.(map[string]any)["content"].(map[string]any)
		if content == nil {
			continue
		}
		_, ok := content["application/json"]
		return ok
	}
	return true
}
