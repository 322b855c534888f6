// Package access decides which export tasks a caller may see.
//
// Every task has an owner: the caller that created it. A caller sees its
// own tasks, the tasks of every caller it shares a group with (a team), and,
// with the operator role, every task, including tasks the service did not
// create. The decision is a Scope, computed from a Policy that the service
// holds in a Live, so that a reload of the callers' configuration takes
// effect without a restart.
package access

import (
	"fmt"
	"slices"
	"sync/atomic"
)

// RoleOperator is the role that sees every task: those of every caller,
// tasks created before callers were authenticated, and tasks the service did
// not create (known only to the cloud).
const RoleOperator = "operator"

// Policy is an immutable set of roles and groups.
type Policy struct {
	operators map[string]bool
	// peers maps a caller to the callers whose tasks it sees because they
	// share a group, itself included; sorted.
	peers map[string][]string
}

// NewPolicy returns the policy of roles (role name to members) and groups
// (group name to members). The only role is RoleOperator; another name is an
// error, so that a misspelt role does not silently grant nothing.
func NewPolicy(roles, groups map[string][]string) (*Policy, error) {
	p := &Policy{operators: map[string]bool{}, peers: map[string][]string{}}
	for role, members := range roles {
		if role != RoleOperator {
			return nil, fmt.Errorf("unknown role %q: the only role is %q", role, RoleOperator)
		}
		for _, m := range members {
			p.operators[m] = true
		}
	}
	sets := map[string]map[string]bool{}
	for _, members := range groups {
		for _, m := range members {
			if sets[m] == nil {
				sets[m] = map[string]bool{m: true}
			}
			for _, other := range members {
				sets[m][other] = true
			}
		}
	}
	for m, set := range sets {
		list := make([]string, 0, len(set))
		for other := range set {
			list = append(list, other)
		}
		slices.Sort(list)
		p.peers[m] = list
	}
	return p, nil
}

// Scope is what one caller may see.
type Scope struct {
	all    bool
	owners []string
}

// Everything is the scope of a service without caller authentication: every
// call sees every task, as before callers could be told apart.
func Everything() Scope { return Scope{all: true} }

// Scope returns what caller may see. The empty caller (not authenticated)
// sees nothing under a policy.
func (p *Policy) Scope(caller string) Scope {
	switch {
	case caller == "":
		return Scope{}
	case p.operators[caller]:
		return Scope{all: true}
	case p.peers[caller] != nil:
		return Scope{owners: p.peers[caller]}
	}
	return Scope{owners: []string{caller}}
}

// All reports whether the scope covers every task, including tasks no
// caller owns and tasks the service did not create.
func (s Scope) All() bool { return s.all }

// Owners lists the owners whose tasks the scope covers, sorted; nil when
// All. Callers must not modify it.
func (s Scope) Owners() []string { return s.owners }

// Allows reports whether the scope covers a task owned by owner.
func (s Scope) Allows(owner string) bool {
	if s.all {
		return true
	}
	_, found := slices.BinarySearch(s.owners, owner)
	return found
}

// Live holds the policy in force. Set replaces it; calls already decided
// keep their scope.
type Live struct {
	p atomic.Pointer[Policy]
}

// NewLive returns a Live holding p.
func NewLive(p *Policy) *Live {
	l := &Live{}
	l.Set(p)
	return l
}

// Set makes p the policy in force.
func (l *Live) Set(p *Policy) { l.p.Store(p) }

// Scope returns what caller may see under the policy in force.
func (l *Live) Scope(caller string) Scope { return l.p.Load().Scope(caller) }
