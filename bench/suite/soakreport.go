package suite

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cwpexport/cwpexport/server/cloud"
)

// report writes the one-page report to the output (and cfg.Report).
func (s *soak) report() error {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	s.mu.Lock()
	defer s.mu.Unlock()

	w("\n## Soak: %d replicas on PostgreSQL, a faulty cloud, crashes, %s\n\n", s.cfg.Replicas, s.cfg.Duration)
	w("`%s` on %s (PostgreSQL %s, load average at the end %s). Emulator: quota %d/s per action, tasks end %s after creation, faults %s. ",
		s.cfg.Command, s.start.UTC().Format("2006-01-02 15:04 UTC"), s.pg.version, loadAverage(), soakQuota, soakPending, faultList())
	w("Replicas at `-create-rate %d -read-rate %d -heartbeat 1s`, their database behind a TCP proxy. A creation every %s, alternately with and without a request id (those with one retried with it on the next replica while Unavailable/DeadlineExceeded, up to 5 times); every task created without a request id watched by a resuming watcher.\n\n",
		fleetRate, fleetRate, s.cfg.CreateEvery)

	w("Chaos (time since the start):\n\n")
	for _, e := range s.events {
		w("- %s\n", e)
	}

	w("\nCreations by outcome: ")
	keys := slices.Sorted(maps.Keys(s.outcomes))
	var parts []string
	for _, k := range keys {
		part := fmt.Sprintf("%s %d", k, s.outcomes[k])
		if fs := s.failedAt[k]; len(fs) > 0 {
			part += " (" + bursts(fs) + ")"
		}
		parts = append(parts, part)
	}
	w("%s.\n", strings.Join(parts, ", "))
	ended, resumes := 0, 0
	var took []float64
	errs := map[string]int{}
	for _, wt := range s.watches {
		if wt.ended {
			ended++
			took = append(took, wt.took.Seconds())
		}
		resumes += wt.resumes
		for c, n := range wt.errs {
			errs[c.String()] += n
		}
	}
	w("Watchers: %d, %d saw the ending (median %.1f s after the creation's answer), %d resumes, stream errors by code:%s.\n\n",
		len(s.watches), ended, median(took), resumes, byCode(errs))

	st, err := s.env.emu.stats()
	if err != nil {
		return err
	}
	cloudTasks, err := s.env.cloudTasks()
	if err != nil {
		return err
	}
	var created []time.Time
	byRID := map[string]int{}
	for _, t := range cloudTasks {
		created = append(created, t.created)
		if t.requestID != "" {
			byRID[t.requestID]++
		}
	}
	dups := 0
	for _, n := range byRID {
		if n > 1 {
			dups++
		}
	}
	bad := 0 // rows of the table that do not hold
	held := func(ok bool) string {
		if !ok {
			bad++
		}
		return verdict(ok)
	}
	heldIf := func(measured, ok bool) string {
		if !measured {
			return "–"
		}
		return held(ok)
	}
	w("| invariant | measured | held |\n|---|---|---|\n")
	for _, action := range []string{cloud.ActionExportLicenseDetail, cloud.ActionExportTasks} {
		a := st.Actions[action]
		w("| ≤ %d requests per sliding 1-s window, %s (emulator: every request, faulted or refused included) | peak %d at %s; %d requests, %d refused RequestLimitExceeded | %s |\n",
			soakQuota, action, a.PeakPerSecond, a.PeakAt.UTC().Format("15:04:05.000"), a.Requests, a.Errors["RequestLimitExceeded"],
			held(a.PeakPerSecond <= soakQuota))
	}
	w("| ≤ %d task creations per sliding 1-s window (journal) | peak %d of %d tasks | %s |\n", soakQuota, peakWindow(created), len(created), held(peakWindow(created) <= soakQuota))
	polls := allPollTimes(st.Actions[cloud.ActionExportTasks].PollTimes)
	w("| ≤ %d answered polls per sliding 1-s window (emulator's poll times) | peak %d of %d polls | %s |\n", soakQuota, peakWindow(polls), len(polls), held(peakWindow(polls) <= soakQuota))
	w("| one cloud task per request id | %d request ids reached the cloud, %d made more than one task | %s |\n", len(byRID), dups, held(dups == 0))
	e := s.end
	w("| every cloud task ends in the registry (ListExportTasks) | %d cloud tasks: %d in the registry, %d ended, %d missing, %d not ended (checked for %s after the load) | %s |\n",
		e.cloud, e.inRegistry, e.ended, len(e.missing), len(e.pending), e.waited.Round(time.Second), held(e.err == nil && len(e.missing) == 0 && len(e.pending) == 0))
	for _, name := range slices.Sorted(maps.Keys(s.rss)) {
		from, to, ok := flat(s.rss[name])
		w("| RSS flat after the first %s of its life, %s | %s | %s |\n", soakWarmUp, name, span(from, to, ok, mib), heldIf(ok, to <= int64(float64(from)*soakGrowth)))
	}
	for _, t := range soakTables {
		from, to, ok := flat(s.rows[t])
		v := "grows with creations (a record per task)"
		if t != "export_tasks" {
			v = heldIf(ok, to <= int64(float64(from)*soakGrowth))
		}
		w("| rows of %s flat after warm-up | %s | %s |\n", t, span(from, to, ok, count), v)
	}
	if len(s.findings) == 0 && bad == 0 {
		w("\nNo invariant was violated during the run.\n")
	} else if len(s.findings) == 0 {
		w("\n%d row(s) of the table do not hold; nothing was found while the run went on.\n", bad)
	} else {
		w("\n%d row(s) of the table do not hold. Violations, as found (time since the start):\n\n", bad)
		for _, f := range s.findings {
			w("- %s\n", f)
		}
	}
	s.printf("%s", b.String())
	if s.cfg.Report != nil {
		if _, err := io.Copy(s.cfg.Report, &b); err != nil {
			return err
		}
	}
	return nil
}

// flat gives the first sample after the warm-up and the last sample.
func flat(xs []soakSample) (from, to int64, ok bool) {
	for i, x := range xs {
		if x.at >= soakWarmUp {
			return x.v, xs[len(xs)-1].v, i < len(xs)-1
		}
	}
	return 0, 0, false
}

func count(n int64) string { return fmt.Sprint(n) }

func span(from, to int64, ok bool, f func(int64) string) string {
	if !ok {
		return "too few samples after warm-up"
	}
	return fmt.Sprintf("%s → %s", f(from), f(to))
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// bursts groups failures less than 10 s apart: "+24s–+29s by replica2,
// replica3 (10); ...".
func bursts(fs []soakFailure) string {
	fs = slices.Clone(fs)
	slices.SortFunc(fs, func(a, b soakFailure) int { return int(a.at - b.at) })
	var out []string
	for i := 0; i < len(fs); {
		j := i + 1
		for j < len(fs) && fs[j].at-fs[j-1].at < 10*time.Second {
			j++
		}
		var by []string
		for _, f := range fs[i:j] {
			if !slices.Contains(by, f.replica) {
				by = append(by, f.replica)
			}
		}
		slices.Sort(by)
		out = append(out, fmt.Sprintf("+%s–+%s by %s (%d)", fs[i].at.Round(time.Second), fs[j-1].at.Round(time.Second), strings.Join(by, ", "), j-i))
		i = j
	}
	return strings.Join(out, "; ")
}
