package taskstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// plannedStore is an SQLite registry of 2000 tasks of 200 callers, one in
// fifty pending, reopened so that the planner has its statistics (they are
// gathered at start-up).
func plannedStore(t *testing.T) *Store {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 2000; i++ {
		st := StateFinished
		if i%50 == 0 {
			st = StatePending
		}
		if err := s.Insert(context.Background(), Task{TaskID: i, Fingerprint: "f", Parameters: "{}", Creator: fmt.Sprintf("caller-%d", i%200),
			RequestID: fmt.Sprintf("r-%d", i), State: st}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if s, err = Open(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestListByCreatorsUsesTheIndex: the creators filter is served by the
// creator index, not by a scan of every task.
func TestListByCreatorsUsesTheIndex(t *testing.T) {
	s := plannedStore(t)
	for _, q := range []Query{
		{Creators: []string{"alice"}, Limit: 50},
		{Creators: []string{"alice", "bob"}, State: StateFinished, After: &Cursor{Seq: 9}, Limit: 50},
	} {
		tail, args := listQuery(q)
		plan := queryPlan(t, s, s.selectColumns()+tail, args...)
		if !strings.Contains(strings.Join(plan, "; "), "USING INDEX export_tasks_creator_") {
			t.Errorf("creators %v: the plan does not use the creator index: %v", q.Creators, plan)
		}
	}
}

// TestHotReadsAreIndexBound: on SQLite, the following pass, the
// retention's batch, and the lookups by task and by request id each read
// an index, never every task.
func TestHotReadsAreIndexBound(t *testing.T) {
	s := plannedStore(t)
	for _, c := range []struct {
		name, sql, index string
		args             []any
	}{
		{"following", s.selectColumns() + followingWhere, "export_tasks_following", nil},
		{"retention", pruneSelect, "export_tasks_created", []any{int64(1), 500}},
		{"by task", s.selectColumns() + `WHERE task_id = $1`, "sqlite_autoindex_export_tasks", []any{int64(7)}},
		{"by request id", s.selectColumns() + `WHERE creator = $1 AND request_id = $2`, "sqlite_autoindex_export_tasks", []any{"caller-7", "r-7"}},
	} {
		plan := queryPlan(t, s, c.sql, c.args...)
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, c.index) || strings.Contains(joined, "SCAN export_tasks;") || strings.HasSuffix(joined, "SCAN export_tasks") {
			t.Errorf("%s: the plan does not read %s alone: %v", c.name, c.index, plan)
		}
	}
}

// queryPlan is SQLite's plan of a query: its steps' details.
func queryPlan(t *testing.T, s *Store, query string, args ...any) []string {
	t.Helper()
	rows, err := s.db.Query(`EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}
