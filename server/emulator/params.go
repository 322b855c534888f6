package emulator

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// object is a decoded JSON object whose values are not yet typed, so each
// field can be checked for its JSON type the way the cloud does.
type object map[string]json.RawMessage

// parseBody decodes the request body, which must be exactly one JSON object.
func parseBody(body []byte) (object, *apiError) {
	if !json.Valid(body) {
		return nil, newError(codeInvalidParameter, "The request body is not valid JSON.")
	}
	return asObject("", body)
}

// field names a parameter path the way the cloud reports it: Filters.0.Name.
func field(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func index(parent string, i int) string { return parent + "." + strconv.Itoa(i) }

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func typeError(path, want string) *apiError {
	if path == "" {
		return newError(codeInvalidParameter, "The request body must be a JSON object.")
	}
	return newError(codeInvalidParameter, "The type of parameter `%s` must be %s.", path, want)
}

func asObject(path string, raw json.RawMessage) (object, *apiError) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, typeError(path, "Object")
	}
	var o object
	if err := json.Unmarshal(trimmed, &o); err != nil {
		return nil, typeError(path, "Object")
	}
	return o, nil
}

// allowOnly rejects fields other than names, like the cloud's UnknownParameter.
func (o object) allowOnly(path string, names ...string) *apiError {
outer:
	for k := range o {
		for _, n := range names {
			if k == n {
				continue outer
			}
		}
		return newError(codeUnknownParameter, "The parameter `%s` is not recognized.", field(path, k))
	}
	return nil
}

// get returns the raw value of name, treating JSON null as absent.
func (o object) get(name string) (json.RawMessage, bool) {
	raw, ok := o[name]
	if !ok || isNull(raw) {
		return nil, false
	}
	return raw, true
}

func (o object) string(path, name string) (string, bool, *apiError) {
	raw, ok := o.get(name)
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, typeError(field(path, name), "String")
	}
	return s, true, nil
}

func (o object) bool(path, name string) (bool, bool, *apiError) {
	raw, ok := o.get(name)
	if !ok {
		return false, false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, true, typeError(field(path, name), "Boolean")
	}
	return b, true, nil
}

func (o object) array(path, name string) ([]json.RawMessage, bool, *apiError) {
	raw, ok := o.get(name)
	if !ok {
		return nil, false, nil
	}
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, true, typeError(field(path, name), "Array")
	}
	return a, true, nil
}

func (o object) stringArray(path, name string) ([]string, bool, *apiError) {
	items, ok, aerr := o.array(path, name)
	if !ok || aerr != nil {
		return nil, ok, aerr
	}
	out := make([]string, len(items))
	for i, raw := range items {
		if err := json.Unmarshal(raw, &out[i]); err != nil || isNull(raw) {
			return nil, true, typeError(index(field(path, name), i), "String")
		}
	}
	return out, true, nil
}

func missing(path string) *apiError {
	return newError(codeMissingParameter, "The request is missing the required parameter `%s`.", path)
}

func invalidValue(path, format string, args ...any) *apiError {
	args = append([]any{path}, args...)
	return newError(codeInvalidParameterValue, "The value of parameter `%s` is invalid: "+format, args...)
}
