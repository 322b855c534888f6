package callerauth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode"

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
// entries separated by commas (the CWPEXPORT_TOKENS form). An entry is
// words separated by blanks, in one of these forms:
//
//	alice 4a0f...            a caller's name and bearer token ("alice=4a0f..." as one word too)
//	role operator olga       olga sees every task (the only role)
//	group team-a alice bob   alice and bob see each other's tasks
//
// A name is one word of printable characters without "=", "," or "#"
// (the keywords role and group excluded); a token is one word, which may
// hold "=", of at least MinTokenLen characters. Anything else is an error
// naming its line (and its entry, when a line holds several), never its
// token. Blank lines and lines starting with # are ignored. Names must be
// unique; role and group lines may repeat and add members. A caller named
// by a client certificate rather than a token gets its roles and groups
// from the same lines.
func ParseTokens(text string) (*Tokens, error) {
	t := &Tokens{byDigest: map[[sha256.Size]byte]string{}, names: map[string]bool{}}
	roles, groups := map[string][]string{}, map[string][]string{}
	lines := strings.Split(text, "\n")
	n := 0
	for ln, line := range lines {
		entries := strings.Split(line, ",")
		for k, entry := range entries {
			entry = strings.TrimSpace(entry)
			if entry == "" || strings.HasPrefix(entry, "#") {
				continue
			}
			n++
			at := entryPosition(len(lines), ln, len(entries), k)
			if err := t.parseEntry(entry, at, roles, groups); err != nil {
				return nil, err
			}
		}
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

// entryPosition names an entry in errors: its line, and its place on the
// line when the line holds several (one line: the environment's form).
func entryPosition(lines, line, entries, entry int) string {
	switch {
	case lines == 1:
		return fmt.Sprintf("entry %d", entry+1)
	case entries > 1:
		return fmt.Sprintf("line %d, entry %d", line+1, entry+1)
	}
	return fmt.Sprintf("line %d", line+1)
}

// parseEntry adds one entry, named at in errors.
func (t *Tokens) parseEntry(entry, at string, roles, groups map[string][]string) error {
	fields := strings.Fields(entry)
	if kw := fields[0]; kw == keywordRole || kw == keywordGroup {
		if len(fields) < 3 {
			return fmt.Errorf("%s: want \"%s NAME MEMBER...\"", at, kw)
		}
		for _, name := range fields[1:] {
			if err := checkName(name); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
		}
		target := roles
		if kw == keywordGroup {
			target = groups
		}
		target[fields[1]] = append(target[fields[1]], fields[2:]...)
		t.members = append(t.members, fields[2:]...)
		return nil
	}
	var name, token string
	switch {
	case len(fields) == 2:
		name, token = fields[0], fields[1]
	case len(fields) == 1 && strings.Contains(fields[0], "="):
		name, token, _ = strings.Cut(fields[0], "=")
	default:
		return fmt.Errorf("%s: want \"NAME TOKEN\" (a name and a token, each one word), \"role ...\" or \"group ...\"", at)
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	switch {
	case t.names[name]:
		return fmt.Errorf("%s: caller %q is listed twice", at, name)
	case len(token) < MinTokenLen:
		return fmt.Errorf("%s (caller %q): the token must be at least %d characters", at, name, MinTokenLen)
	}
	d := sha256.Sum256([]byte(token))
	if _, dup := t.byDigest[d]; dup {
		return fmt.Errorf("%s (caller %q): the token is already given to another caller", at, name)
	}
	t.names[name] = true
	t.byDigest[d] = name
	return nil
}

// checkName refuses what cannot name a caller, a role or a group.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("a name is empty")
	case name == keywordRole || name == keywordGroup:
		return fmt.Errorf("%q is a keyword and cannot be a name", name)
	case strings.ContainsAny(name, "=,#") || strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }):
		// Not quoted: a misplaced token would show in the error.
		return errors.New("a name must be a printable word without \"=\", \",\" or \"#\"")
	}
	return nil
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
