package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/internal/testutil"
	"github.com/cwpexport/cwpexport/server/pgtest"
	"github.com/cwpexport/cwpexport/server/taskstore"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestRegistryPromisesOnPostgres: the registry's promises (creation once
// per request id, whatever happens to the cloud call; lists newest first
// in stable pages; callers kept apart) hold with the registry on
// PostgreSQL, as on SQLite.
func TestRegistryPromisesOnPostgres(t *testing.T) {
	for _, c := range []struct {
		name string
		test func(*testing.T)
	}{
		{"RetriedCreateReturnsTheFirstTask", TestRetriedCreateReturnsTheFirstTask},
		{"ConcurrentDuplicateCreatesMakeOneUpstreamCall", TestConcurrentDuplicateCreatesMakeOneUpstreamCall},
		{"ListPagesNewestFirstWithFilterAndConcurrentInserts", TestListPagesNewestFirstWithFilterAndConcurrentInserts},
		{"AmbiguousCreationIsNeverRepeated", TestAmbiguousCreationIsNeverRepeated},
		{"CreationOutlivesItsCaller", TestCreationOutlivesItsCaller},
		{"TeamsKeepTheirTasksApartWithTokens", TestTeamsKeepTheirTasksApartWithTokens},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(testserver.EnvRegistry, "postgres")
			c.test(t)
		})
	}
}

// replicas starts n services (replicas) on one PostgreSQL registry and one
// cloud: the first replica's emulator.
func replicas(t *testing.T, n int, dsn string) []*testserver.Env {
	t.Helper()
	o := fastApp()
	o.Database = dsn
	first := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	envs := []*testserver.Env{first}
	for range n - 1 {
		o := o
		o.Endpoint, o.Scheme = first.EmulatorAddr, "HTTP"
		envs = append(envs, testserver.Start(t, testserver.Config{App: o}))
	}
	return envs
}

// TestReplicasCreateOncePerRequestID: one request id sent to two replicas
// at once makes one cloud task, and both answers carry it.
func TestReplicasCreateOncePerRequestID(t *testing.T) {
	envs := replicas(t, 2, pgtest.DSN(t))
	// The cloud takes its time: the second replica finds the first one's
	// reservation in flight and waits for its outcome.
	if err := envs[0].Emulator.InjectFault(emulator.Fault{Kind: emulator.FaultLatency, Action: "ExportLicenseDetail", Delay: 300 * time.Millisecond, Probability: 1}); err != nil {
		t.Fatal(err)
	}
	const requests = 12
	var wg sync.WaitGroup
	ids := make([][2]string, requests)
	errs := make([][2]error, requests)
	for i := range requests {
		requestID := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		start := make(chan struct{})
		for r, env := range envs {
			wg.Go(func() {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{RequestId: requestID})
				ids[i][r], errs[i][r] = res.GetTask().GetTaskId(), err
			})
		}
		close(start)
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range requests {
		if errs[i][0] != nil || errs[i][1] != nil || ids[i][0] == "" || ids[i][0] != ids[i][1] {
			t.Fatalf("request %d: tasks %q, errors %v; want one task in both answers", i, ids[i], errs[i])
		}
		seen[ids[i][0]] = true
	}
	if n := created(envs[0]); n != requests || len(seen) != requests {
		t.Fatalf("the cloud created %d tasks (%d distinct answered) for %d request ids sent twice each", n, len(seen), requests)
	}
}

// TestReplicasListOneRegistry: every replica lists every replica's tasks
// newest first; a page token one replica issued continues on another; tasks
// created between pages, on either replica, shift no later page; a replica
// started again finds them all.
func TestReplicasListOneRegistry(t *testing.T) {
	dsn := pgtest.DSN(t)
	envs := replicas(t, 2, dsn)
	ctx := context.Background()
	create := func(env *testserver.Env) string {
		t.Helper()
		res, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetTask().GetTaskId()
	}
	var want []string
	for i := range 7 {
		want = append([]string{create(envs[i%2])}, want...)
	}
	list := func(env *testserver.Env) []string {
		t.Helper()
		var got []string
		token := ""
		for page := 0; ; page++ {
			// Pages alternate between the replicas.
			res, err := envs[page%2].Client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 3, PageToken: token})
			if env != nil {
				res, err = env.Client.ListExportTasks(ctx, &cwpexportv1.ListExportTasksRequest{PageSize: 3, PageToken: token})
			}
			if err != nil {
				t.Fatalf("page %d: %v", page, err)
			}
			for _, task := range res.GetTasks() {
				got = append(got, task.GetTaskId())
			}
			if env == nil {
				create(envs[(page+1)%2]) // newer: it shifts no later page
			}
			if token = res.GetNextPageToken(); token == "" {
				return got
			}
		}
	}
	if got := list(nil); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pages across replicas listed %v, want %v", got, want)
	}
	all := list(envs[1])
	if len(all) <= len(want) || fmt.Sprint(all[len(all)-len(want):]) != fmt.Sprint(want) {
		t.Fatalf("the whole list %v does not end with %v", all, want)
	}
	// A replica started again (the other one runs on) lists them all.
	envs[1].Stop()
	o := fastApp()
	o.Database, o.Endpoint, o.Scheme = dsn, envs[0].EmulatorAddr, "HTTP"
	again := testserver.Start(t, testserver.Config{App: o})
	if got := list(again); fmt.Sprint(got) != fmt.Sprint(all) {
		t.Fatalf("a restarted replica lists %v, want %v", got, all)
	}
}

// TestReplicasLearnTasksRecordedLater: a replica that read a task before
// any replica recorded it (the cloud had made it; the replica that asked
// for it had not yet written the cloud's answer) answers it with what the
// registry holds (its request id) within a second or so, not as a task made
// outside the service for good.
func TestReplicasLearnTasksRecordedLater(t *testing.T) {
	dsn := pgtest.DSN(t)
	envs := replicas(t, 1, dsn)
	id := createOutside(t, envs[0])
	res, err := envs[0].Client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: id})
	if err != nil || res.GetTask().GetRequestId() != "" {
		t.Fatalf("a task the registry does not know: %v %v", res, err)
	}
	// Another replica writes the cloud's answer to its creation.
	store := openRegistry(t, dsn)
	const requestID = "00000000-0000-4000-8000-0000000000b1"
	row, _, err := store.Reserve(context.Background(), taskstore.Task{RequestID: requestID, Fingerprint: fingerprintOfEmptyRequest(t), Parameters: "{}",
		Owner: "another-replica", Created: time.Now()}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := store.Complete(context.Background(), row.ID, row.Owner, taskstore.Task{TaskID: mustParse(t, id), Created: now, State: string(cloud.StatusPending),
		Observed: now, Changed: now}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the replica to know the task's request id", func() bool {
		res, err = envs[0].Client.GetExportTask(context.Background(), &cwpexportv1.GetExportTaskRequest{TaskId: id})
		return err == nil && res.GetTask().GetRequestId() == requestID
	})
}

// TestAnotherReplicasReservation: a request id another replica reserved is
// in progress while its lease lasts (by the database's clock), whatever the
// clock of the replica asked; once the lease is past its outcome is
// unknown (the replica died during its cloud call). Neither reaches the
// cloud.
func TestAnotherReplicasReservation(t *testing.T) {
	dsn := pgtest.DSN(t)
	store := openRegistry(t, dsn)
	const live, dead = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000d"
	for requestID, lease := range map[string]time.Duration{live: time.Hour, dead: -time.Second} {
		// The other replica's clock is a day off: it does not matter.
		r, fresh, err := store.Reserve(context.Background(), taskstore.Task{RequestID: requestID, Fingerprint: fingerprintOfEmptyRequest(t), Parameters: "{}",
			Owner: "another-replica", Created: time.Now().Add(-24 * time.Hour)}, lease)
		if err != nil || !fresh {
			t.Fatalf("reserve: %v %v", fresh, err)
		}
		if err := store.CallStarting(context.Background(), r.ID, r.Owner, lease); err != nil {
			t.Fatal(err)
		}
	}
	o := fastApp()
	o.Database = dsn
	env := testserver.Start(t, testserver.Config{Emulator: emulator.Options{PendingFor: -1}, App: o})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := env.Client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{RequestId: live}); status.Code(err) != codes.Unavailable || reason(err) != "CREATION_IN_PROGRESS" {
		t.Fatalf("a request id another replica holds: %v, want Unavailable CREATION_IN_PROGRESS", err)
	}
	if _, err := env.Client.ExportLicenseDetail(context.Background(), &cwpexportv1.ExportLicenseDetailRequest{RequestId: dead}); status.Code(err) != codes.Aborted || reason(err) != "CREATION_OUTCOME_UNKNOWN" {
		t.Fatalf("a request id whose replica's lease is past: %v, want Aborted CREATION_OUTCOME_UNKNOWN", err)
	}
	if n := created(env); n != 0 {
		t.Fatalf("the cloud created %d tasks", n)
	}
}

// openRegistry opens the registry on dsn as another replica would.
func openRegistry(t *testing.T, dsn string) *taskstore.Store {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := taskstore.OpenPostgres(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store
}

// TestDatabasePasswordsNeverAppear: the password of the database's
// connection string appears neither in start-up errors (a server that
// cannot be reached, a string that does not parse) nor in the log.
func TestDatabasePasswordsNeverAppear(t *testing.T) {
	const secret = "pw-s3cret-4f1d"
	base := app.Options{SecretID: testserver.SecretID, SecretKey: testserver.SecretKey, Endpoint: "127.0.0.1:1", Scheme: "HTTP", AllowPrivateCloud: true, DataDir: t.TempDir()}
	for _, dsn := range []string{
		"postgres://cwp:" + secret + "@127.0.0.1:1/registry?connect_timeout=5",
		"postgres://cwp:" + secret + "@127.0.0.1:notaport/registry",
		"host=127.0.0.1 port=1 password=" + secret + " connect_timeout=5",
		"host=127.0.0.1 port=x password='" + secret + "'",
	} {
		o := base
		o.Database = dsn
		if _, err := app.New(o); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("start-up on an unreachable or invalid database: %v", err)
		}
	}
	// A server that accepts the connection (trust ignores the password).
	var logs bytes.Buffer
	o := base
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	o.Database = strings.Replace(pgtest.DSN(t), "postgres://test@", "postgres://test:"+secret+"@", 1)
	srv, err := app.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Pool() == nil {
		t.Error("the PostgreSQL registry's pool is not exposed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // start and stop at once, closing the registry
	grpcLis, restLis := listenLoopback(t), listenLoopback(t)
	_ = srv.Serve(ctx, grpcLis, restLis)
	if !strings.Contains(logs.String(), "engine=postgres") || strings.Contains(logs.String(), secret) {
		t.Fatalf("the log names no PostgreSQL registry, or shows the password:\n%s", logs.String())
	}
}

// TestResolveDatabase: the flag, then DATABASE_URL, then the PG*
// environment, then SQLite; "sqlite" forces SQLite.
func TestResolveDatabase(t *testing.T) {
	for _, c := range []struct {
		flag        string
		env         map[string]string
		want, whose string
	}{
		{"", nil, "", "default"},
		{"", map[string]string{"PGUSER": "u", "PGPASSWORD": "p"}, "", "default"},
		{"", map[string]string{"PGHOST": "db"}, "postgres://", "PGHOST"},
		{"", map[string]string{"PGDATABASE": "reg", "DATABASE_URL": "postgres://a/b"}, "postgres://a/b", "DATABASE_URL"},
		{"postgres://f/g", map[string]string{"DATABASE_URL": "postgres://a/b", "PGHOST": "db"}, "postgres://f/g", "-database"},
		{"sqlite", map[string]string{"DATABASE_URL": "postgres://a/b"}, "", "-database"},
		{"host=x dbname=y", nil, "host=x dbname=y", "-database"},
	} {
		got, whose := app.ResolveDatabase(c.flag, func(k string) string { return c.env[k] })
		if got != c.want || whose != c.whose {
			t.Errorf("flag %q, env %v: %q from %s, want %q from %s", c.flag, c.env, got, whose, c.want, c.whose)
		}
	}
}

// listenLoopback is a listener on a loopback port the kernel chooses.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	return lis
}
