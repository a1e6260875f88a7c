// Package avrotest is a small Confluent-compatible schema registry for
// tests, served over real HTTP on loopback: register a schema under a
// subject (POST /subjects/{subject}/versions), fetch one by ID
// (GET /schemas/ids/{id}), list subjects and their versions. IDs are
// global and the same schema text gets the same ID, as in Confluent's.
// Compatibility rules are not checked.
package avrotest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Registry is a running fake registry.
type Registry struct {
	URL string

	mu       sync.Mutex
	byText   map[string]int
	texts    []string
	subjects map[string][]int // subject → schema IDs, one per version
	requests int
}

// Start serves a registry until the test ends.
func Start(t testing.TB) *Registry {
	r := &Registry{byText: map[string]int{}, subjects: map[string][]int{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func fail(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case req.Method == http.MethodPost && len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		var body struct {
			Schema string `json:"schema"`
		}
		b, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(b, &body); err != nil || body.Schema == "" {
			fail(w, 422, 42201, "Input schema is an invalid Avro schema")
			return
		}
		var parsed map[string]any
		if err := json.Unmarshal([]byte(body.Schema), &parsed); err != nil || parsed["type"] != "record" {
			fail(w, 422, 42201, "Input schema is an invalid Avro schema")
			return
		}
		id, ok := r.byText[body.Schema]
		if !ok {
			r.texts = append(r.texts, body.Schema)
			id = len(r.texts)
			r.byText[body.Schema] = id
		}
		versions := r.subjects[parts[1]]
		found := false
		for _, v := range versions {
			found = found || v == id
		}
		if !found {
			r.subjects[parts[1]] = append(versions, id)
		}
		json.NewEncoder(w).Encode(map[string]int{"id": id})
	case req.Method == http.MethodGet && len(parts) == 3 && parts[0] == "schemas" && parts[1] == "ids":
		id, err := strconv.Atoi(parts[2])
		if err != nil || id < 1 || id > len(r.texts) {
			fail(w, 404, 40403, "Schema not found")
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"schema": r.texts[id-1]})
	case req.Method == http.MethodGet && len(parts) == 1 && parts[0] == "subjects":
		var names []string
		for s := range r.subjects {
			names = append(names, s)
		}
		json.NewEncoder(w).Encode(names)
	default:
		fail(w, 404, 404, fmt.Sprintf("no route %s %s", req.Method, req.URL.Path))
	}
}

// Versions are the schema IDs registered under a subject, in order.
func (r *Registry) Versions(subject string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.subjects[subject]...)
}

// Requests counts the requests served.
func (r *Registry) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}
