package suite

import "context"

func (r *Runner) budget(context.Context) error  { return nil }
func (r *Runner) latency(context.Context) error { return nil }
func (r *Runner) reads(context.Context) error   { return nil }
