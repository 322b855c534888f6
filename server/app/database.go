package app

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

// DatabaseSQLite, as the -database flag, chooses SQLite in the data
// directory whatever the environment says.
const DatabaseSQLite = "sqlite"

// pgEnvironment are the libpq variables that name a PostgreSQL server or
// database: any of them set chooses PostgreSQL. (Others, such as PGUSER or
// PGPASSWORD, only complete a connection named elsewhere.)
var pgEnvironment = []string{"PGHOST", "PGHOSTADDR", "PGDATABASE", "PGSERVICE"}

// Bounds of the registry's PostgreSQL connections.
const (
	// pgConnectTimeout bounds one connection's set-up, unless the
	// connection string sets connect_timeout.
	pgConnectTimeout = 10 * time.Second
	// pgOpenTimeout bounds opening the registry: connecting, waiting for
	// another replica's migration (up to 5 minutes), migrating, checking.
	pgOpenTimeout = 6 * time.Minute
)

// ResolveDatabase chooses the task registry's database from the -database
// flag and the environment (getenv), first found first:
//
//  1. the flag: a PostgreSQL connection string (postgres://… or
//     key=value), or "sqlite" for SQLite whatever the environment says;
//  2. DATABASE_URL;
//  3. the libpq environment, when PGHOST, PGHOSTADDR, PGDATABASE or
//     PGSERVICE is set (the connection string is then "postgres://", whose
//     every setting comes from PG* variables);
//  4. none of them: SQLite in the data directory (an empty database).
//
// source says which one was used, for the start-up log.
func ResolveDatabase(flag string, getenv func(string) string) (database, source string) {
	switch {
	case flag == DatabaseSQLite:
		return "", "-database"
	case flag != "":
		return flag, "-database"
	case getenv("DATABASE_URL") != "":
		return getenv("DATABASE_URL"), "DATABASE_URL"
	}
	for _, v := range pgEnvironment {
		if getenv(v) != "" {
			return "postgres://", v
		}
	}
	return "", "default"
}

// defaultPoolMaxConns is the size of a replica's PostgreSQL pool unless the
// connection string sets pool_max_conns.
const defaultPoolMaxConns = 32

// openRegistry opens the registry the options name: PostgreSQL through a
// pool of its own when Database is set, else SQLite in DataDir.
func (s *Server) openRegistry(ctx context.Context) error {
	if s.opts.Database == "" {
		reg, err := taskstore.Open(ctx, s.opts.DataDir)
		if err != nil {
			return err
		}
		s.registry = reg
		s.log.Info("task registry", "engine", "sqlite", "path", filepath.Join(s.opts.DataDir, taskstore.FileName))
		return nil
	}
	cfg, err := pgxpool.ParseConfig(s.opts.Database)
	if err != nil {
		// Not pgx's message: it may quote the string, password and all.
		return errors.New("the PostgreSQL connection string is not valid; see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING")
	}
	if !strings.Contains(s.opts.Database, "pool_max_conns") {
		// pgx's default (4 on small machines) caps a replica at a few
		// statements a second when the database answers slowly: the budget's
		// slots, the registry's writes and the schedule's polls then queue
		// for a connection, and creations wait on bookkeeping.
		cfg.MaxConns = defaultPoolMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "cwpexportd"
	}
	where := describePostgres(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	octx, cancel := context.WithTimeout(ctx, pgOpenTimeout)
	defer cancel()
	reg, err := taskstore.OpenPostgres(octx, pool)
	if err != nil {
		pool.Close()
		return fmt.Errorf("%s: %w", where, err)
	}
	s.registry, s.pool = reg, pool
	s.log.Info("task registry", "engine", "postgres", "database", where)
	return nil
}

// describePostgres names the database a configuration connects to, without
// its password.
func describePostgres(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	u := url.URL{Scheme: "postgres", User: url.User(c.User), Host: fmt.Sprintf("%s:%d", c.Host, c.Port), Path: "/" + c.Database}
	if strings.HasPrefix(c.Host, "/") {
		u.Host, u.RawQuery = "", "host="+url.QueryEscape(c.Host)
	}
	return u.String()
}

// closeRegistry closes the registry and its pool.
func (s *Server) closeRegistry() {
	s.registry.Close()
	if s.pool != nil {
		s.pool.Close()
	}
}

// Pool returns the PostgreSQL pool the task registry uses, for the other
// parts of the service that keep their state in the same database; nil
// when the registry is SQLite.
func (s *Server) Pool() *pgxpool.Pool { return s.pool }
