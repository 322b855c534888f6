package schema_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite"

	"github.com/cwpexport/cwpexport/server/pgtest"
	"github.com/cwpexport/cwpexport/server/schema"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Three releases' migrations: the first creates a table, the second
// expands it, the third drops what the second made obsolete.
var (
	release1 = fstest.MapFS{
		"00001_items.sql": {Data: []byte("-- +goose Up\nCREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL);\n-- +goose Down\nDROP TABLE items;\n")},
	}
	release2 = with(release1, "00002_label.sql", "-- +goose Up\nALTER TABLE items ADD COLUMN label TEXT NOT NULL DEFAULT '';\n-- +goose Down\nSELECT 1;\n")
	release3 = with(release2, "00003_no_name.sql", "-- Release 2 reads label, never name.\n"+schema.ContractMarker+"\n-- +goose Up\nALTER TABLE items DROP COLUMN name;\n-- +goose Down\nSELECT 1;\n")
)

func with(base fstest.MapFS, name, text string) fstest.MapFS {
	out := fstest.MapFS{}
	for k, v := range base {
		out[k] = v
	}
	out[name] = &fstest.MapFile{Data: []byte(text)}
	return out
}

type engine struct {
	name    string
	dialect goose.Dialect
	open    func(t *testing.T) *sql.DB
}

var engines = []engine{
	{"sqlite", goose.DialectSQLite3, func(t *testing.T) *sql.DB {
		return openDB(t, "sqlite", "file:"+filepath.Join(t.TempDir(), "s.db"))
	}},
	{"postgres", goose.DialectPostgres, func(t *testing.T) *sql.DB { return openDB(t, "pgx", pgtest.DSN(t)) }},
}

func openDB(t *testing.T, driver, dsn string) *sql.DB {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// open opens the store as a build carrying fsys would.
func open(t *testing.T, e engine, db *sql.DB, fsys fs.FS) (schema.Status, error) {
	t.Helper()
	p, err := goose.NewProvider(e.dialect, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	return schema.Open(context.Background(), db, "registry", fsys, func(ctx context.Context) error {
		_, err := p.Up(ctx)
		return err
	})
}

func TestAnOlderBuildServesAnExpandedSchema(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			db := e.open(t)
			if _, err := open(t, e, db, release2); err != nil {
				t.Fatal(err)
			}
			st, err := open(t, e, db, release1)
			if err != nil {
				t.Fatalf("release 1 on release 2's schema: %v", err)
			}
			if st != (schema.Status{Store: "registry", Known: 1, Database: 2, Requires: 0}) {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func TestAContractedSchemaRefusesTheBuildsItLeftBehind(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			db := e.open(t)
			if _, err := open(t, e, db, release2); err != nil {
				t.Fatal(err)
			}
			if st, err := open(t, e, db, release3); err != nil || st.Requires != 3 || st.Database != 3 {
				t.Fatalf("release 3: %+v, %v", st, err)
			}
			_, err := open(t, e, db, release2)
			if !errors.Is(err, schema.ErrIncompatible) {
				t.Fatalf("release 2 on release 3's schema: %v, want ErrIncompatible", err)
			}
			for _, want := range []string{"schema version 3", "at least version 3", "knows up to 2"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal %q does not say %q", err, want)
				}
			}
			// The refused build changed nothing: release 3 still serves.
			if _, err := open(t, e, db, release3); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReadFindsVersionsAndContracts(t *testing.T) {
	s, err := schema.Read(release3)
	if err != nil {
		t.Fatal(err)
	}
	if s.Known != 3 || s.Requires != 3 || len(s.Migrations) != 3 || s.Migrations[1].Contract || !s.Migrations[2].Contract {
		t.Fatalf("%+v", s)
	}
	if _, err := schema.Read(fstest.MapFS{"items.sql": {Data: []byte("")}}); err == nil {
		t.Fatal("a migration without a version was accepted")
	}
}
