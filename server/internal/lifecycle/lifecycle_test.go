package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
)

func TestTheFirstFailureIsKeptAndStopsTheServer(t *testing.T) {
	failed := make(chan struct{}, 2)
	g := NewGroup(func() { failed <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	boom := errors.New("boom")
	g.Go(ctx, Part{Name: "broken", Run: func(context.Context) error { return boom }},
		Loop("loop", func(ctx context.Context) { <-ctx.Done() }))
	<-failed
	cancel()
	if err := g.Wait(); !errors.Is(err, boom) || err.Error() != "broken: boom" {
		t.Errorf("Wait = %v, want the broken part's failure", err)
	}
}

func TestShutdownTakesTheStepsInOrder(t *testing.T) {
	var done []string
	step := func(name string) Step { return Step{Name: name, Do: func() { done = append(done, name) }} }
	Shutdown(slog.New(slog.DiscardHandler), step("servers"), step("creations"), step("background"))
	if want := []string{"servers", "creations", "background"}; !slices.Equal(done, want) {
		t.Errorf("steps %v, want %v", done, want)
	}
}
