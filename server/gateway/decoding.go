package gateway

import (
	"errors"
	"regexp"
	"strings"
	"unicode"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// namedField finds the field a decoding error names, in protojson's
// messages about a body and in the query parser's.
var namedField = []*regexp.Regexp{
	regexp.MustCompile(`unknown field "([^"]+)"`),
	regexp.MustCompile(`duplicate field "([^"]+)"`),
	regexp.MustCompile(`invalid value for [a-z0-9]+ field ([A-Za-z0-9_]+)`),
	regexp.MustCompile(`unknown query parameter "([^"]+)"`),
	regexp.MustCompile(`parsing field "([^"]+)"`),
}

// maxDecodingMessage bounds what a decoder's message may add to an answer:
// it can quote the request.
const maxDecodingMessage = 300

// decodingError gives an InvalidArgument that grpc-gateway made while
// decoding a REST request (a body that is not the request's JSON, a query
// parameter) the details of the service's own answers to bad input: an
// ErrorInfo with the reason INVALID_ARGUMENT, and a field violation when
// the decoder named the field (in the API's snake_case). Errors that carry
// details already, and others, pass unchanged.
func decodingError(err error) error {
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || len(st.Proto().GetDetails()) > 0 {
		return err
	}
	// protobuf-go writes "proto:" and a space, or a no-break space.
	what := strings.TrimLeftFunc(strings.TrimPrefix(st.Message(), "proto:"), unicode.IsSpace)
	what = strings.ToValidUTF8(what, "\uFFFD")
	if len(what) > maxDecodingMessage {
		what = strings.ToValidUTF8(what[:maxDecodingMessage], "") + "…"
	}
	for _, re := range namedField {
		if m := re.FindStringSubmatch(what); m != nil {
			return apierror.InvalidField(snakeCase(m[1]), what)
		}
	}
	return apierror.Error(cwpexportv1.ErrorReason_INVALID_ARGUMENT, "invalid request: "+what)
}

// snakeCase writes a JSON name (isHistory, pageSize.x) as the API's field
// names are written (is_history, page_size.x).
func snakeCase(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 && name[i-1] != '.' {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// withErrorInfo adds an ErrorInfo (domain cwpexport.v1) to an error that
// has no details, so that every REST answer carries one: the reason named
// after the status's code (apierror.Ensure). An HTTPStatusError keeps its
// HTTP status.
func withErrorInfo(err error) error {
	var hs *runtime.HTTPStatusError
	if errors.As(err, &hs) {
		return &runtime.HTTPStatusError{HTTPStatus: hs.HTTPStatus, Err: withErrorInfo(hs.Err)}
	}
	return apierror.Ensure(err)
}
