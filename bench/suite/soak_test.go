package suite

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cwpexport/cwpexport/server/pgtest"
)

// PostgreSQL answers through the delay proxy before, while and after it
// holds every chunk, and the delay can change under open connections.
func TestDelayProxyForwardsWhileTheDelayChanges(t *testing.T) {
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p, err := startDelayProxy(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	u.Host = p.addr()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for i, d := range []time.Duration{0, 20 * time.Millisecond, 0} {
		p.setDelay(d)
		var got int
		if err := conn.QueryRow(ctx, "SELECT $1::int * 2", i).Scan(&got); err != nil {
			t.Fatalf("delay %s: %v", d, err)
		}
		if got != 2*i {
			t.Fatalf("delay %s: got %d, want %d", d, got, 2*i)
		}
	}
	// Closing the proxy ends its connections.
	p.close()
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a connection through a closed proxy still answers")
	}
}

// Failed creations are grouped into bursts less than 10 s apart, each with
// the processes that answered them.
func TestBurstsGroupFailures(t *testing.T) {
	got := bursts([]soakFailure{
		{at: 31 * time.Second, replica: "replica3"},
		{at: 24 * time.Second, replica: "replica2"},
		{at: 29 * time.Second, replica: "replica2"},
		{at: 90 * time.Second, replica: "(no live replica)"},
	})
	want := "+24s–+31s by replica2, replica3 (3); +1m30s–+1m30s by (no live replica) (1)"
	if got != want {
		t.Fatalf("bursts:\n got %q\nwant %q", got, want)
	}
}

// Flatness is judged from the first sample after the warm-up to the last.
func TestFlatStartsAfterTheWarmUp(t *testing.T) {
	xs := []soakSample{{10 * time.Second, 5}, {soakWarmUp, 7}, {2 * soakWarmUp, 9}}
	if from, to, ok := flat(xs); !ok || from != 7 || to != 9 {
		t.Fatalf("flat = %d, %d, %v; want 7, 9, true", from, to, ok)
	}
	if _, _, ok := flat(xs[:2]); ok {
		t.Fatal("one sample after the warm-up is not enough")
	}
}
