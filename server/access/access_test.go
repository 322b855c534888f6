package access_test

import (
	"slices"
	"testing"

	"github.com/cwpexport/cwpexport/server/access"
)

func TestScopes(t *testing.T) {
	p, err := access.NewPolicy(
		map[string][]string{access.RoleOperator: {"olga"}},
		map[string][]string{"team-a": {"alice", "bob"}, "team-b": {"bob", "carol"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		caller  string
		all     bool
		owners  []string
		allowed []string
		denied  []string
	}{
		{caller: "olga", all: true, allowed: []string{"olga", "alice", "", "anyone"}},
		{caller: "alice", owners: []string{"alice", "bob"}, allowed: []string{"alice", "bob"}, denied: []string{"carol", "olga", ""}},
		// In two groups: the union, but not transitively (alice is not carol's peer).
		{caller: "bob", owners: []string{"alice", "bob", "carol"}, allowed: []string{"alice", "carol"}, denied: []string{"olga", ""}},
		{caller: "carol", owners: []string{"bob", "carol"}, denied: []string{"alice"}},
		{caller: "dave", owners: []string{"dave"}, allowed: []string{"dave"}, denied: []string{"alice", ""}},
		{caller: "", owners: nil, denied: []string{"", "alice"}},
	}
	for _, c := range cases {
		s := p.Scope(c.caller)
		if s.All() != c.all || !slices.Equal(s.Owners(), c.owners) {
			t.Errorf("%q: all %v owners %v, want %v %v", c.caller, s.All(), s.Owners(), c.all, c.owners)
		}
		for _, o := range c.allowed {
			if !s.Allows(o) {
				t.Errorf("%q does not see tasks of %q", c.caller, o)
			}
		}
		for _, o := range c.denied {
			if s.Allows(o) {
				t.Errorf("%q sees tasks of %q", c.caller, o)
			}
		}
	}
	if e := access.Everything(); !e.All() || !e.Allows("") {
		t.Errorf("Everything() does not see everything")
	}
}

func TestUnknownRoleIsRefused(t *testing.T) {
	if _, err := access.NewPolicy(map[string][]string{"operater": {"olga"}}, nil); err == nil {
		t.Fatal("a misspelt role was accepted")
	}
}

func TestLiveSwapsPolicies(t *testing.T) {
	before, _ := access.NewPolicy(nil, nil)
	after, _ := access.NewPolicy(nil, map[string][]string{"team": {"alice", "bob"}})
	live := access.NewLive(before)
	if live.Scope("bob").Allows("alice") {
		t.Fatal("bob sees alice's tasks before the groups say so")
	}
	live.Set(after)
	if !live.Scope("bob").Allows("alice") {
		t.Fatal("bob does not see alice's tasks after the reload")
	}
}
