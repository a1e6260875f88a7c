package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/raftcdc/raftcdc/model"
)

// OpenAPI is an OpenAPI 3.0 document, only as much of the format as raftcdc
// needs.
type OpenAPI struct {
	OpenAPI    string              `json:"openapi"`
	Info       Info                `json:"info"`
	Paths      map[string]PathItem `json:"paths"`
	Components Components          `json:"components"`
	Tags       []Tag               `json:"tags,omitempty"`
}

// Info describes the API.
type Info struct {
	Title       string `json:"title"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
}

// Tag groups operations.
type Tag struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// PathItem maps a lower-case HTTP method to its operation.
type PathItem map[string]*Operation

// Operation is one route.
type Operation struct {
	OperationID string                `json:"operationId"`
	Summary     string                `json:"summary"`
	Description string                `json:"description,omitempty"`
	Tags        []string              `json:"tags,omitempty"`
	Parameters  []Parameter           `json:"parameters,omitempty"`
	RequestBody *RequestBody          `json:"requestBody,omitempty"`
	Responses   map[string]Response   `json:"responses"`
	Security    []map[string][]string `json:"security,omitempty"`
}

// Parameter is a path or query parameter.
type Parameter struct {
	Name        string  `json:"name"`
	In          string  `json:"in"`
	Description string  `json:"description,omitempty"`
	Required    bool    `json:"required,omitempty"`
	Schema      *Schema `json:"schema"`
}

// RequestBody is what a route reads.
type RequestBody struct {
	Description string               `json:"description,omitempty"`
	Required    bool                 `json:"required"`
	Content     map[string]MediaType `json:"content"`
}

// MediaType holds the schema of one content type.
type MediaType struct {
	Schema *Schema `json:"schema"`
}

// Response is one status of a route.
type Response struct {
	Description string               `json:"description"`
	Content     map[string]MediaType `json:"content,omitempty"`
}

// Schema is a JSON schema in OpenAPI's dialect.
type Schema struct {
	Ref         string             `json:"$ref,omitempty"`
	Type        string             `json:"type,omitempty"`
	Format      string             `json:"format,omitempty"`
	Description string             `json:"description,omitempty"`
	Enum        []string           `json:"enum,omitempty"`
	Minimum     *float64           `json:"minimum,omitempty"`
	Nullable    bool               `json:"nullable,omitempty"`
	Properties  map[string]*Schema `json:"properties,omitempty"`
	Required    []string           `json:"required,omitempty"`
	Items       *Schema            `json:"items,omitempty"`
	// AdditionalProperties is a *Schema for maps and false for structs, so
	// that a field the document does not list is a detectable drift.
	AdditionalProperties any `json:"additionalProperties,omitempty"`
}

// Components holds the named schemas and the security schemes.
type Components struct {
	Schemas         map[string]*Schema        `json:"schemas"`
	SecuritySchemes map[string]SecurityScheme `json:"securitySchemes"`
}

// SecurityScheme is how a client authenticates.
type SecurityScheme struct {
	Type        string `json:"type"`
	Scheme      string `json:"scheme"`
	Description string `json:"description,omitempty"`
}

// schemaGen derives schemas from the Go types the handlers encode, so the
// document cannot describe a field the code does not have.
type schemaGen struct {
	schemas map[string]*Schema
}

// enums lists the values of the string types that have a fixed set.
func enumOf(t reflect.Type) []string {
	switch t {
	case reflect.TypeFor[model.FeedState]():
		return []string{string(model.StateNormal), string(model.StateStopped), string(model.StateFailed), string(model.StateError), string(model.StateRemoved), string(model.StateFinished)}
	case reflect.TypeFor[model.AdminJobType]():
		return []string{string(model.AdminPause), string(model.AdminResume), string(model.AdminRemove), string(model.AdminFinish)}
	}
	return nil
}

// schemaName names a struct's schema: its Go name, prefixed with its package
// outside package api so that model.MoveTableRequest and
// api.MoveTableRequest stay apart.
func schemaName(t reflect.Type) string {
	pkg := t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:]
	if pkg == "api" {
		return t.Name()
	}
	r := []rune(pkg)
	r[0] = unicode.ToUpper(r[0])
	return string(r) + t.Name()
}

func (g *schemaGen) of(t reflect.Type) *Schema {
	switch t {
	case reflect.TypeFor[time.Time]():
		return &Schema{Type: "string", Format: "date-time"}
	case reflect.TypeFor[json.RawMessage]():
		return &Schema{Description: "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := g.of(t.Elem())
		if s.Ref == "" {
			s.Nullable = true
		}
		return s
	case reflect.Bool:
		return &Schema{Type: "boolean"}
	case reflect.String:
		return &Schema{Type: "string", Enum: enumOf(t)}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &Schema{Type: "integer", Format: "int64"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		zero := 0.0
		return &Schema{Type: "integer", Format: "int64", Minimum: &zero}
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: "number", Format: "double"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return &Schema{Type: "string", Format: "byte"}
		}
		return &Schema{Type: "array", Items: g.of(t.Elem())}
	case reflect.Map:
		return &Schema{Type: "object", AdditionalProperties: g.of(t.Elem())}
	case reflect.Struct:
		if t.Name() == "" {
			return g.object(t)
		}
		name := schemaName(t)
		if _, ok := g.schemas[name]; !ok {
			g.schemas[name] = &Schema{} // breaks recursion; filled below
			*g.schemas[name] = *g.object(t)
		}
		return &Schema{Ref: "#/components/schemas/" + name}
	}
	return &Schema{Description: "any JSON value"}
}

func (g *schemaGen) object(t reflect.Type) *Schema {
	s := &Schema{Type: "object", Properties: map[string]*Schema{}, AdditionalProperties: false}
	g.addFields(s, t)
	return s
}

// addFields follows encoding/json: tags name fields, "-" hides them,
// omitempty makes them optional, and untagged embedded structs are inlined.
func (g *schemaGen) addFields(s *Schema, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.addFields(s, f.Type)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s.Properties[name] = g.of(f.Type)
		if !strings.Contains(opts, "omitempty") {
			s.Required = append(s.Required, name)
		}
	}
}
