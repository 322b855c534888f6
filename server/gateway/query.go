package gateway

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// grpc-gateway keeps its query parser in a package variable, which its
// ServeMux option overwrites at every mux built (a data race between
// servers in one process); it is set once here instead.
func init() {
	runtime.SetQueryParameterParser(&strictQuery{})(nil)
}

// strictQuery parses query parameters as grpc-gateway does, but refuses a
// parameter that names no field of the request, as unknown fields of a JSON
// body are refused: a misspelt `pagesize` must not silently mean "default".
type strictQuery struct {
	runtime.DefaultQueryParser
}

// Parse implements runtime.QueryParameterParser.
func (q *strictQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	for key := range values {
		if !namesField(msg.ProtoReflect().Descriptor(), key) {
			return fmt.Errorf("unknown query parameter %q", key)
		}
	}
	return q.DefaultQueryParser.Parse(msg, values, filter)
}

// namesField reports whether a dotted key (proto or JSON names) leads to a
// field of md.
func namesField(md protoreflect.MessageDescriptor, key string) bool {
	parts := strings.Split(key, ".")
	for i, p := range parts {
		fd := md.Fields().ByName(protoreflect.Name(p))
		if fd == nil {
			fd = md.Fields().ByJSONName(p)
		}
		if fd == nil {
			return false
		}
		if i < len(parts)-1 {
			if fd.Message() == nil {
				return false
			}
			md = fd.Message()
		}
	}
	return true
}
