package api

import (
	"net/http"
	"slices"
	"testing"
)

// routesOnly is enough of a Store to register routes.
type routesOnly struct{ Store }

func (routesOnly) Metrics() http.Handler { return http.NotFoundHandler() }

// TestDocumentedRoutesAreRegistered checks the route table itself against
// what New, EnableCDC and EnableOpenAPI register, both ways, so that the
// document neither misses a route nor describes one that no longer exists.
func TestDocumentedRoutesAreRegistered(t *testing.T) {
	h := New(routesOnly{})
	h.EnableCDC(nil)
	h.EnableOpenAPI()
	registered := slices.Sorted(slices.Values(h.Routes))
	documented := slices.Sorted(slices.Values(documentedPatterns()))
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %q is registered but not documented in api/openapi.go", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("route %q is documented but not registered", d)
		}
	}
	if len(slices.Compact(slices.Clone(documented))) != len(documented) {
		t.Errorf("a route is documented twice: %v", documented)
	}
}

func TestOperationIDsAreUnique(t *testing.T) {
	seen := map[string]string{}
	for _, d := range routeDocs() {
		if d.id == "" || d.summary == "" || d.tag == "" {
			t.Errorf("%s lacks an operation ID, summary or tag", d.pattern)
		}
		if other, dup := seen[d.id]; dup {
			t.Errorf("operation ID %q used by %s and %s", d.id, other, d.pattern)
		}
		seen[d.id] = d.pattern
	}
}
