package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/pgtest"
)

// TestRegistryDatabaseChoice: the daemon keeps its registry in the
// PostgreSQL database that -database names, else DATABASE_URL, else the
// PG* environment; -database sqlite keeps it in the data directory
// whatever the environment says. Each start logs what chose it.
func TestRegistryDatabaseChoice(t *testing.T) {
	dsn := pgtest.DSN(t)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir() // the embedded emulator's state, kept across the starts
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const requestID = "3f6c1d2e-8a4b-4c5d-9e0f-1a2b3c4d5e6f"
	export := func(d *embeddedDaemon) string {
		t.Helper()
		res, err := d.client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{RequestId: requestID})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetTask().GetTaskId()
	}
	listed := func(d *embeddedDaemon) []string {
		t.Helper()
		page, err := d.client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, task := range page.GetTasks() {
			ids = append(ids, task.GetTaskId())
		}
		return ids
	}

	d := startEmbeddedWith(t, dataDir, "1h", "-database "+dsn, "DATABASE_URL=postgres://nobody@127.0.0.1:1/nothing")
	id := export(d)
	if d.registryChosenBy != "-database" {
		t.Errorf("registry chosen by %q, want -database", d.registryChosenBy)
	}
	d.stop(t)

	for _, c := range []struct {
		by  string
		env []string
	}{
		{"DATABASE_URL", []string{"DATABASE_URL=" + dsn, "PGHOST=127.0.0.1", "PGPORT=1"}},
		{"PGHOST", []string{"PGHOST=" + cfg.Host, "PGPORT=" + fmt.Sprint(cfg.Port), "PGUSER=" + cfg.User, "PGDATABASE=" + cfg.Database, "PGSSLMODE=disable"}},
	} {
		d := startEmbeddedWith(t, dataDir, "1h", "", c.env...)
		if d.registryChosenBy != c.by {
			t.Errorf("registry chosen by %q, want %s", d.registryChosenBy, c.by)
		}
		if got := listed(d); len(got) != 1 || got[0] != id {
			t.Errorf("registry chosen by %s lists %v, want [%s]", c.by, got, id)
		}
		if again := export(d); again != id {
			t.Errorf("the request id's retry, registry chosen by %s: task %s, want %s", c.by, again, id)
		}
		d.stop(t)
	}

	d = startEmbeddedWith(t, dataDir, "1h", "-database sqlite", "DATABASE_URL="+dsn)
	if got := listed(d); len(got) != 0 {
		t.Errorf("-database sqlite lists %v from PostgreSQL", got)
	}
	d.stop(t)
}
