package flags_test

import (
	"bytes"
	"flag"
	"os"
	"testing"

	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/budget"
	"github.com/cwpexport/cwpexport/server/exports"
	"github.com/cwpexport/cwpexport/server/flags"
)

// TestDocsFlagsIsCurrent fails when docs/flags.md is not what the flags
// generate (run `make flagsdoc`).
func TestDocsFlagsIsCurrent(t *testing.T) {
	var want bytes.Buffer
	if err := flags.Markdown(&want); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/flags.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("docs/flags.md differs from what server/flags generates: run `make flagsdoc`")
	}
}

// TestDefaultsAreThePackagesOwn: without flags on the command line, the
// options carry the defaults the packages apply.
func TestDefaultsAreThePackagesOwn(t *testing.T) {
	var o app.Options
	fs := flag.NewFlagSet("cwpexportd", flag.ContinueOnError)
	c := flags.Register(fs, &o)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if o.ReadRate != budget.DefaultRate || o.CreateRate != budget.DefaultRate || o.CreateTimeout != exports.DefaultCreateTimeout ||
		o.DataDir != app.DefaultDataDir || c.GRPCAddr != flags.DefaultGRPCAddr {
		t.Errorf("options from no flags: %+v, %+v", o, c)
	}
}
