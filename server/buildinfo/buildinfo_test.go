package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestLinkTimeValuesWin(t *testing.T) {
	rec := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "v0.0.1"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "fromvcs"}}}, true
	}
	got := read("v1.2.0", "abc", rec)
	if got.Version != "v1.2.0" || got.Commit != "abc" {
		t.Fatalf("got %+v, want the link-time version and commit", got)
	}
}

func TestFallsBackToTheToolchainsRecord(t *testing.T) {
	rec := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"},
		}}, true
	}
	got := read("", "", rec)
	if got.Version != "v1.3.0" || got.Commit != "0123abcd" || !got.Modified {
		t.Fatalf("got %+v", got)
	}
	if s := got.String(); !strings.Contains(s, "v1.3.0 (commit 0123abcd-modified, go") {
		t.Fatalf("String() = %q", s)
	}
}

func TestNothingRecorded(t *testing.T) {
	got := read("", "", func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true
	})
	if got.Version != "devel" || got.Commit != Unknown || got.Go == "" || got.Platform == "" {
		t.Fatalf("got %+v", got)
	}
}
