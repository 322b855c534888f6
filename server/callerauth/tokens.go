package callerauth

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cwpexport/cwpexport/server/access"
)

// MinTokenLen is the shortest accepted bearer token: shorter ones are
// guessable.
const MinTokenLen = 16

// Keywords that start a declaration rather than a token entry; they cannot
// name a caller.
const (
	keywordRole  = "role"
	keywordGroup = "group"
)

// Tokens is the callers' configuration: the bearer tokens that name callers,
// and the roles and groups of callers (see package access). Only SHA-256
// digests of the tokens are kept, so a dump of the process's memory
// structures or an accidental %v never shows a token.
type Tokens struct {
	byDigest map[[sha256.Size]byte]string
	names    map[string]bool
	members  []string // every caller a role or group names, sorted
	policy   *access.Policy
}

// ParseTokens reads the callers' configuration, one entry per line or
// entries separated by commas (the CWPEXPORT_TOKENS form):
//
//	alice 4a0f...            a caller's name and bearer token ("alice=4a0f..." too)
//	role operator olga       olga sees every task (the only role)
//	group team-a alice bob   alice and bob see each other's tasks
//
// Blank lines and lines starting with # are ignored. Names must be unique
// and tokens at least MinTokenLen bytes; role and group lines may repeat
// and add members. A caller named by a client certificate rather than a
// token gets its roles and groups from the same lines. Error messages name
// the entry by position and caller name, never by token.
func ParseTokens(text string) (*Tokens, error) {
	t := &Tokens{byDigest: map[[sha256.Size]byte]string{}, names: map[string]bool{}}
	roles, groups := map[string][]string{}, map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(strings.ReplaceAll(text, ",", "\n")))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		fields := strings.Fields(line)
		if kw := fields[0]; kw == keywordRole || kw == keywordGroup {
			if len(fields) < 3 {
				return nil, fmt.Errorf("entry %d: want \"%s NAME MEMBER...\"", n, kw)
			}
			for _, m := range fields[2:] {
				if m == keywordRole || m == keywordGroup || strings.Contains(m, "=") {
					return nil, fmt.Errorf("entry %d: %q cannot name a caller", n, m)
				}
			}
			target := roles
			if kw == keywordGroup {
				target = groups
			}
			target[fields[1]] = append(target[fields[1]], fields[2:]...)
			t.members = append(t.members, fields[2:]...)
			continue
		}
		name, token, ok := strings.Cut(line, "=")
		if !ok {
			if len(fields) != 2 {
				return nil, fmt.Errorf("token entry %d: want \"name token\"", n)
			}
			name, token = fields[0], fields[1]
		}
		name, token = strings.TrimSpace(name), strings.TrimSpace(token)
		switch {
		case name == "":
			return nil, fmt.Errorf("token entry %d: the caller name is empty", n)
		case name == keywordRole || name == keywordGroup:
			return nil, fmt.Errorf("token entry %d: %q is a keyword and cannot name a caller", n, name)
		case t.names[name]:
			return nil, fmt.Errorf("token entry %d: caller %q is listed twice", n, name)
		case len(token) < MinTokenLen:
			return nil, fmt.Errorf("token entry %d (caller %q): the token must be at least %d characters", n, name, MinTokenLen)
		}
		d := sha256.Sum256([]byte(token))
		if _, dup := t.byDigest[d]; dup {
			return nil, fmt.Errorf("token entry %d (caller %q): the token is already given to another caller", n, name)
		}
		t.names[name] = true
		t.byDigest[d] = name
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("no tokens configured")
	}
	policy, err := access.NewPolicy(roles, groups)
	if err != nil {
		return nil, err
	}
	t.policy = policy
	slices.Sort(t.members)
	t.members = slices.Compact(t.members)
	return t, nil
}

// LoadTokens reads a tokens file (see ParseTokens).
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseTokens(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Len is the number of configured tokens.
func (t *Tokens) Len() int { return len(t.byDigest) }

// Policy returns the roles and groups the configuration declares.
func (t *Tokens) Policy() *access.Policy { return t.policy }

// Unlisted returns the callers that role and group lines name but no token
// does, sorted. Without client certificates to name them, they are typing
// mistakes.
func (t *Tokens) Unlisted() []string {
	var out []string
	for _, m := range t.members {
		if !t.names[m] {
			out = append(out, m)
		}
	}
	return out
}

// lookup returns the caller a token belongs to. Comparing digests through a
// map does not reveal, by timing, how much of a guessed token was right.
func (t *Tokens) lookup(token string) (string, bool) {
	name, ok := t.byDigest[sha256.Sum256([]byte(token))]
	return name, ok
}
