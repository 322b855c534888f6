package protocodec

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// exportWire encodes an export request whose second filter's third value
// is the given bytes, by hand: the protobuf library refuses to encode
// invalid UTF-8.
func exportWire(bad string) []byte {
	filter := func(values ...string) []byte {
		var f []byte
		f = protowire.AppendTag(f, 1, protowire.BytesType)
		f = protowire.AppendString(f, "Keywords")
		for _, v := range values {
			f = protowire.AppendTag(f, 2, protowire.BytesType)
			f = protowire.AppendString(f, v)
		}
		return f
	}
	var b []byte
	for _, f := range [][]byte{filter("a"), filter("b", "c", bad)} {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, f)
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}

func TestInvalidUTF8IsNotedWithItsField(t *testing.T) {
	c := New()
	m := &cwpexportv1.ExportLicenseDetailRequest{}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(exportWire("\xff\xfe"))}, m); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	err := c.take(m)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "invalid request: filters[1].values[2]: must be valid UTF-8" {
		t.Fatalf("status %v", err)
	}
	if c.take(m) != nil {
		t.Fatalf("the note was kept after it was answered")
	}
	ok := &cwpexportv1.ExportLicenseDetailRequest{}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(exportWire("d"))}, ok); err != nil || c.take(ok) != nil || len(ok.GetFilters()) != 2 || !ok.GetIsHistory() {
		t.Fatalf("a valid request: %v %v", err, ok)
	}
	// Other decoding failures stay failures.
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0xff})}, &cwpexportv1.ExportLicenseDetailRequest{}); err == nil {
		t.Fatalf("truncated wire data decoded")
	}
}
