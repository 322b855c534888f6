package taskstore

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestListByCreatorsUsesTheIndex: the creators filter is served by the
// creator index, not by a scan of every task.
func TestListByCreatorsUsesTheIndex(t *testing.T) {
	s, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []Query{
		{Creators: []string{"alice"}, Limit: 50},
		{Creators: []string{"alice", "bob"}, State: StateFinished, After: &Cursor{Created: time.Now(), TaskID: 9}, Limit: 50},
	} {
		tail, args := listQuery(q)
		rows, err := s.db.Query(`EXPLAIN QUERY PLAN SELECT `+columns+` FROM export_tasks `+tail, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if !strings.Contains(strings.Join(plan, "; "), "USING INDEX export_tasks_creator_") {
			t.Errorf("creators %v: the plan does not use the creator index: %v", q.Creators, plan)
		}
	}
}
