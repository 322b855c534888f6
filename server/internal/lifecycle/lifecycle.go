// Package lifecycle runs the server's background parts, all of one shape
// (a Part: a name and a Run that returns when its context ends or the
// part is stopped), and stops the server in a declared order of Steps.
package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// Part is a background part of the server. Run returns when ctx ends (or,
// for a server, when a shutdown step stops it); an error means the part
// failed, and the server stops.
type Part struct {
	Name string
	Run  func(ctx context.Context) error
}

// Loop is a Part whose loop runs until ctx ends and cannot fail.
func Loop(name string, run func(ctx context.Context)) Part {
	return Part{Name: name, Run: func(ctx context.Context) error { run(ctx); return nil }}
}

// Group runs parts, each in its own goroutine, and keeps the first
// failure.
type Group struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	failed func()
}

// NewGroup returns a group that calls failed (once per failure) when a
// part fails.
func NewGroup(failed func()) *Group { return &Group{failed: failed} }

// Go runs the parts under ctx.
func (g *Group) Go(ctx context.Context, parts ...Part) {
	for _, p := range parts {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if err := p.Run(ctx); err != nil {
				g.mu.Lock()
				if g.err == nil {
					g.err = fmt.Errorf("%s: %w", p.Name, err)
				}
				g.mu.Unlock()
				g.failed()
			}
		}()
	}
}

// Wait waits for every part to return and returns the first failure.
func (g *Group) Wait() error {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Step is one step of a shutdown.
type Step struct {
	// Name says what the step ends, for the log.
	Name string
	Do   func()
}

// Shutdown takes the steps in order, each after the previous one ended.
func Shutdown(log *slog.Logger, steps ...Step) {
	for _, s := range steps {
		log.Debug("shutting down", "step", s.Name)
		s.Do()
	}
}
