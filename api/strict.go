package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// Body limits. A request over its limit gets 413 with the limit named.
const (
	// BodyLimit bounds JSON request bodies.
	BodyLimit = 16 << 20
	// ValueLimit bounds one key's value (PUT /api/v1/kv/{key}).
	ValueLimit = 4 << 20
)

// CodeTooLarge and CodeMethodNotAllowed are the codes of 413 and 405.
const (
	CodeTooLarge         = "body_too_large"
	CodeMethodNotAllowed = "method_not_allowed"
)

func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ReadBody reads a request body of at most limit bytes. A declared or
// actual length over the limit is a 413 naming it; the rest of such a body
// is not read.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	tooLarge := Errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "the request body is larger than the limit of %s", sizeText(limit))
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, CodeBadRequest, "reading the request body: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, tooLarge
	}
	return b, nil
}

// DecodeBody reads a JSON body strictly into v: one value and nothing after
// it, no key twice in an object, field names spelled exactly as documented
// (encoding/json alone would take SOURCE_URI for source_uri and let the
// last of two equal keys win), and no unknown fields. Each of those is a
// 400 that names the field and where it is.
func DecodeBody(r *http.Request, v any) error {
	b, err := ReadBody(r, BodyLimit)
	if err != nil {
		return err
	}
	return decodeStrict(b, v)
}

func decodeStrict(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "the request body is empty; send a JSON object")
	}
	if err := checkJSON(b, reflect.TypeOf(v)); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "the request body is not valid: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "the request body is not valid: %v", err)
	}
	return nil
}

// checkJSON walks the document's tokens along the Go type it will be
// decoded into.
func checkJSON(b []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := walkValue(dec, t, ""); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("unexpected data after the JSON value at byte %d: send exactly one JSON object", dec.InputOffset())
	}
	return nil
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// opaque says whether a type decodes itself, so its field names are its
// own business (the walk still checks the JSON is well formed).
func opaque(t reflect.Type) bool {
	if t == nil || t.Kind() == reflect.Interface {
		return true
	}
	return t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType)
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func walkValue(dec *json.Decoder, t reflect.Type, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return early(err)
	}
	t = deref(t)
	if opaque(t) {
		t = nil
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, t, path)
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkValue(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ]
		return early(err)
	}
	return nil
}

// early turns the decoder's bare EOF inside a value into words.
func early(err error) error {
	if err == io.EOF {
		return errors.New("the JSON ends too early")
	}
	return err
}

func walkObject(dec *json.Decoder, t reflect.Type, path string) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = jsonFields(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return early(err)
		}
		key := tok.(string)
		at := key
		if path != "" {
			at = path + "." + key
		}
		if seen[key] {
			return fmt.Errorf("field %s appears twice", quoteClip(at))
		}
		seen[key] = true
		ft := elem
		if fields != nil {
			var ok bool
			if ft, ok = fields[key]; !ok {
				return unknownField(fields, at, key)
			}
		}
		if err := walkValue(dec, ft, at); err != nil {
			return err
		}
	}
	_, err := dec.Token() // }
	return early(err)
}

func unknownField(fields map[string]reflect.Type, at, key string) error {
	names := make([]string, 0, len(fields))
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Errorf("field %s: names are case-sensitive; did you mean %q?", quoteClip(at), name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return fmt.Errorf("unknown field %s (known: %s)", quoteClip(at), strings.Join(names, ", "))
}

// jsonFields maps each JSON name of a struct to its field's type, as
// encoding/json sees them: tags, "-", untagged embedded structs promoted.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			if et := deref(f.Type); et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					if _, shadowed := out[k]; !shadowed {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// Clip bounds user input quoted back in a message: the first part, and how
// long the whole was. A client can send a megabyte ID; the error need not
// carry it back.
func Clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:cut], len(s))
}

func quoteClip(s string) string { return fmt.Sprintf("%q", Clip(s)) }

// BoolParam reads a boolean query parameter strictly: absent is false;
// present, it must be exactly true or false, once. "?all=yes" is an error,
// not a silent false.
func BoolParam(r *http.Request, name string) (bool, error) {
	vals, ok := r.URL.Query()[name]
	if !ok {
		return false, nil
	}
	if len(vals) != 1 {
		return false, Errorf(http.StatusBadRequest, CodeBadRequest, "query parameter %s is given %d times; give it once", name, len(vals))
	}
	switch vals[0] {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, Errorf(http.StatusBadRequest, CodeBadRequest, "query parameter %s must be true or false, not %s", name, quoteClip(vals[0]))
}
