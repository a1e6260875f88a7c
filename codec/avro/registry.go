package avro

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Registry is a client of a Confluent-compatible schema registry. It
// caches registrations, so a schema is posted once per subject and
// process, and schemas by ID, so a consumer fetches each once: a registry
// never changes the schema an ID names.
type Registry struct {
	base   string
	client *http.Client

	mu    sync.Mutex
	ids   map[registration]int32
	texts map[int32]string
}

// registration is what a cached ID answers: a schema under a subject.
type registration struct{ subject, fingerprint string }

// NewRegistry returns a client for the registry at base (http[s]://host:port).
func NewRegistry(base string, client *http.Client) *Registry {
	if client == nil {
		client = http.DefaultClient
	}
	return &Registry{base: strings.TrimRight(base, "/"), client: client, ids: map[registration]int32{}, texts: map[int32]string{}}
}

const contentType = "application/vnd.schemaregistry.v1+json"

// Register registers s under subject (or finds it already registered) and
// returns its ID.
func (r *Registry) Register(ctx context.Context, subject string, s *Schema) (int32, error) {
	key := registration{subject, s.Fingerprint()}
	r.mu.Lock()
	id, ok := r.ids[key]
	r.mu.Unlock()
	if ok {
		return id, nil
	}
	body, _ := json.Marshal(map[string]string{"schema": s.JSON})
	u := r.base + "/subjects/" + url.PathEscape(subject) + "/versions"
	var out struct {
		ID int32 `json:"id"`
	}
	if err := r.do(ctx, http.MethodPost, u, body, &out); err != nil {
		return 0, fmt.Errorf("schema registry: registering subject %s: %w", subject, err)
	}
	r.mu.Lock()
	r.ids[key] = out.ID
	r.mu.Unlock()
	return out.ID, nil
}

// SchemaText fetches the schema registered with an ID.
func (r *Registry) SchemaText(ctx context.Context, id int32) (string, error) {
	r.mu.Lock()
	text, ok := r.texts[id]
	r.mu.Unlock()
	if ok {
		return text, nil
	}
	var out struct {
		Schema string `json:"schema"`
	}
	if err := r.do(ctx, http.MethodGet, r.base+"/schemas/ids/"+strconv.Itoa(int(id)), nil, &out); err != nil {
		return "", fmt.Errorf("schema registry: schema %d: %w", id, err)
	}
	r.mu.Lock()
	r.texts[id] = out.Schema
	r.mu.Unlock()
	return out.Schema, nil
}

func (r *Registry) do(ctx context.Context, method, u string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", contentType)
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s (HTTP %d, error code %d)", e.Message, resp.StatusCode, e.Code)
		}
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("malformed answer: %w", err)
	}
	return nil
}
