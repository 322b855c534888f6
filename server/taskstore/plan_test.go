package taskstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestListByCreatorsUsesTheIndex: the creators filter is served by the
// creator index, not by a scan of every task.
func TestListByCreatorsUsesTheIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := int64(1); i <= 2000; i++ {
		st := StateFinished
		if i%50 == 0 {
			st = StatePending
		}
		if err := s.Insert(context.Background(), Task{TaskID: i, Fingerprint: "f", Parameters: "{}", Creator: fmt.Sprintf("caller-%d", i%200), State: st}); err != nil {
			t.Fatal(err)
		}
	}
	// The statistics the planner needs are gathered at start-up.
	s.Close()
	if s, err = Open(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range []Query{
		{Creators: []string{"alice"}, Limit: 50},
		{Creators: []string{"alice", "bob"}, State: StateFinished, After: &Cursor{Seq: 9}, Limit: 50},
	} {
		tail, args := listQuery(q)
		rows, err := s.db.Query(`EXPLAIN QUERY PLAN `+s.selectColumns()+tail, args...)
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
