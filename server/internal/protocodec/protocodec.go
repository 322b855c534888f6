// Package protocodec is the gRPC server's protobuf codec: grpc-go's own,
// except for requests holding a string that is not valid UTF-8. grpc-go
// fails to decode those and answers Internal before any interceptor sees
// the call; this codec lets the decode succeed, notes the offending field,
// and its interceptors answer InvalidArgument with a field violation, as the
// REST gateway does. Nothing changes on the wire, so no client notices.
package protocodec

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cwpexport/cwpexport/server/apierror"
)

// Codec is the codec with what answers for it: install it with
// grpc.ForceServerCodecV2, its Unary interceptor, and Checked in the
// server's stream interceptor.
type Codec struct {
	base encoding.CodecV2
	// invalid maps a decoded message (its pointer) to the field that held
	// invalid UTF-8, until an interceptor answers for it.
	invalid sync.Map
}

// New returns the codec.
func New() *Codec { return &Codec{base: encoding.GetCodecV2(proto.Name)} }

// Name is the codec's content subtype: it replaces "proto".
func (c *Codec) Name() string { return proto.Name }

// Marshal encodes as grpc-go does.
func (c *Codec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

// Unmarshal decodes as grpc-go does, but notes invalid UTF-8 instead of
// failing: the request is then answered by an interceptor.
func (c *Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	var utf8Err interface{ InvalidUTF8() bool }
	if err == nil || !errors.As(err, &utf8Err) || !utf8Err.InvalidUTF8() {
		return err
	}
	m, ok := v.(protov2.Message)
	if !ok {
		return err
	}
	c.invalid.Store(v, invalidField(data.Materialize(), m.ProtoReflect().Descriptor()))
	return nil
}

// take returns the status for a message whose decode found invalid UTF-8,
// forgetting it, or nil.
func (c *Codec) take(m any) error {
	field, ok := c.invalid.LoadAndDelete(m)
	if !ok {
		return nil
	}
	path := field.(string)
	desc := "must be valid UTF-8"
	if path == "" {
		path, desc = "request", "a string field is not valid UTF-8"
	}
	return apierror.InvalidField(path, desc)
}

// Unary answers a unary request the codec flagged. Place it before any
// interceptor that may end a call without calling on: the request is
// decoded before the first interceptor runs, and the note must be taken.
func (c *Codec) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := c.take(req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Checked returns ss with the messages it receives checked: one the codec
// flagged is answered InvalidArgument.
func (c *Codec) Checked(ss grpc.ServerStream) grpc.ServerStream {
	return &checkedStream{ServerStream: ss, c: c}
}

type checkedStream struct {
	grpc.ServerStream
	c *Codec
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.c.take(m)
}

// invalidField finds the first string field of a message's wire form that
// is not valid UTF-8, as a field path ("filters[0].values[2]"), or "".
func invalidField(b []byte, md protoreflect.MessageDescriptor) string {
	seen := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil || fd.IsMap() {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		name := string(fd.Name())
		if fd.IsList() {
			name = fmt.Sprintf("%s[%d]", name, seen[num])
			seen[num]++
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name
			}
		case protoreflect.MessageKind:
			if inner := invalidField(v, fd.Message()); inner != "" {
				return name + "." + inner
			}
		}
	}
	return ""
}
