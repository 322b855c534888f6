package apierror_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/apierror"
)

// wireReasons are the reason strings the service answered with before the
// catalog existed: clients and scripts match them, so each must stay a
// value's name.
var wireReasons = []string{
	"INVALID_ARGUMENT", "TASK_NOT_FOUND", "TASK_NOT_FINISHED", "DOWNLOAD_FAILED",
	"UPSTREAM_RESOURCE_NOT_FOUND", "UPSTREAM_INVALID_ARGUMENT", "UPSTREAM_RATE_LIMITED", "UPSTREAM_QUOTA_EXCEEDED",
	"UPSTREAM_CREDENTIALS_REJECTED", "UPSTREAM_PERMISSION_DENIED", "UPSTREAM_UNAVAILABLE", "UPSTREAM_FAILED_OPERATION",
	"UPSTREAM_UNKNOWN_ERROR", "EXPORT_BUDGET_EXHAUSTED", "CALLER_SHARE_EXHAUSTED", "CALLER_READ_RATE_EXCEEDED",
	"CALLER_STREAM_LIMIT_EXCEEDED", "REQUEST_ID_REUSED", "REGISTRY_FAILED", "CREATION_IN_PROGRESS",
	"CREATION_OUTCOME_UNKNOWN", "DEADLINE_EXCEEDED", "CANCELED", "SHUTTING_DOWN", "UNAUTHENTICATED",
	"BUDGET_NOT_MEASURED", "INTERNAL", "UNKNOWN_PATH", "METHOD_NOT_ALLOWED", "UNSUPPORTED_MEDIA_TYPE",
	"HOST_NOT_ALLOWED", "ORIGIN_NOT_ALLOWED", "REQUEST_TOO_LARGE", "REQUEST_BODY_TIMEOUT", "REQUEST_BODY_UNREADABLE",
}

func TestWireReasonsAreValueNames(t *testing.T) {
	for _, r := range wireReasons {
		if _, ok := cwpexportv1.ErrorReason_value[r]; !ok {
			t.Errorf("reason %s is not a value of ErrorReason", r)
		}
	}
}

// TestEveryReasonHasAStatus checks the catalog's options: every value but
// the unspecified one says its code, and an HTTP status only where it
// differs from the code's.
func TestEveryReasonHasAStatus(t *testing.T) {
	values := cwpexportv1.ErrorReason(0).Descriptor().Values()
	for i := range values.Len() {
		r := cwpexportv1.ErrorReason(values.Get(i).Number())
		if r == cwpexportv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		c := apierror.Code(r)
		if c == codes.OK || (c == codes.Unknown && r != cwpexportv1.ErrorReason_UNKNOWN && r != cwpexportv1.ErrorReason_UPSTREAM_UNKNOWN_ERROR) {
			t.Errorf("%s: code %v; give it an error_reason_status option with its code", r, c)
		}
		if h := apierror.HTTPStatus(r); h < 400 || h > 599 {
			t.Errorf("%s: HTTP status %d", r, h)
		}
	}
	if got := apierror.HTTPStatus(cwpexportv1.ErrorReason_UNSUPPORTED_MEDIA_TYPE); got != 415 {
		t.Errorf("UNSUPPORTED_MEDIA_TYPE: HTTP %d, want its own 415", got)
	}
	if got := apierror.HTTPStatus(cwpexportv1.ErrorReason_TASK_NOT_FOUND); got != runtime.HTTPStatusFromCode(codes.NotFound) {
		t.Errorf("TASK_NOT_FOUND: HTTP %d, want NotFound's", got)
	}
}

// TestCodeReasonNamesEveryCode checks that a status without a reason of its
// own gets the value named after its code, as the REST gateway has always
// named them, for every code: the catalog holds every reason the fallback
// can give.
func TestCodeReasonNamesEveryCode(t *testing.T) {
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		var want strings.Builder // the gateway's former spelling: InvalidArgument -> INVALID_ARGUMENT
		for i, r := range c.String() {
			if i > 0 && r >= 'A' && r <= 'Z' {
				want.WriteByte('_')
			}
			want.WriteString(strings.ToUpper(string(r)))
		}
		r := apierror.CodeReason(c)
		if r.String() != want.String() {
			t.Errorf("%v: reason %s, want %s", c, r, want.String())
		}
		if apierror.Code(r) != c {
			t.Errorf("%v: the reason named after it has code %v", c, apierror.Code(r))
		}
	}
}

// TestNoErrorDetailsOutsideTheCatalog checks the source: outside this
// package no code attaches or reads ErrorInfo, RetryInfo or BadRequest
// details itself, and no reason is spelled as a string. Every reason the
// service emits is then a value of the enum, given to apierror's builder.
func TestNoErrorDetailsOutsideTheCatalog(t *testing.T) {
	root := moduleRoot(t)
	details := map[string]bool{"ErrorInfo": true, "RetryInfo": true, "BadRequest": true}
	var checked int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch {
			case rel == "gen", rel == filepath.Join("server", "apierror"), strings.HasPrefix(d.Name(), "."),
				d.Name() == "node_modules", d.Name() == "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "errdetails" && details[n.Sel.Name] {
					t.Errorf("%s: errdetails.%s outside server/apierror: build or read it with apierror", fset.Position(n.Pos()), n.Sel.Name)
				}
				if n.Sel.Name == "WithDetails" {
					t.Errorf("%s: WithDetails outside server/apierror: use apierror.New", fset.Position(n.Pos()))
				}
			case *ast.BasicLit:
				if n.Kind != token.STRING {
					break
				}
				if s, err := strconv.Unquote(n.Value); err == nil && s != "" {
					if _, ok := cwpexportv1.ErrorReason_value[s]; ok {
						t.Errorf("%s: the reason %s spelled as a string: use cwpexportv1.ErrorReason_%s", fset.Position(n.Pos()), s, s)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked %d files under %s: the walk missed the source", checked, root)
	}
}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}
