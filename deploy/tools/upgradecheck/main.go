// Command upgradecheck checks that this commit's migrations keep a rolling
// upgrade safe against the previous release (deploy/upgrade/previous-release):
// the migrations that release carried are unchanged, and every migration
// added since only expands the schema, unless it is marked
// "-- cwpexport:contract" (package schema: builds that do not carry it then
// refuse the database). It works from the files: every directory named
// migrations under server/, in this tree and in the previous release's.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// contractMarker is package schema's ContractMarker (a separate module).
const contractMarker = "-- cwpexport:contract"

// contracting are statements an older release may break on: what it reads
// or writes disappears, changes type, or refuses rows it writes.
var contracting = []struct {
	re   *regexp.Regexp
	what string
}{
	{regexp.MustCompile(`(?i)\bDROP\s+(TABLE|COLUMN|VIEW|TYPE|FUNCTION|TRIGGER)\b`), "drops"},
	{regexp.MustCompile(`(?i)\bALTER\s+TABLE\s+\S+\s+DROP\s+(?:CONSTRAINT\s+)?\w`), "drops a column"},
	{regexp.MustCompile(`(?i)\bRENAME\b`), "renames"},
	{regexp.MustCompile(`(?i)\bALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE\b`), "changes a column's type"},
	{regexp.MustCompile(`(?i)\bSET\s+NOT\s+NULL\b`), "makes a column required"},
	{regexp.MustCompile(`(?i)\bADD\s+(COLUMN\s+)?\w+\s+[^,;]*\bNOT\s+NULL\b`), "adds a required column"},
	{regexp.MustCompile(`(?i)\bADD\s+CONSTRAINT\b`), "adds a constraint"},
	{regexp.MustCompile(`(?i)\bCREATE\s+UNIQUE\s+INDEX\b`), "adds a uniqueness rule"},
	{regexp.MustCompile(`(?i)\b(TRUNCATE|DELETE\s+FROM)\b`), "deletes rows"},
}

// defaulted spares "ADD COLUMN x … NOT NULL DEFAULT …": old writers that
// omit the column get the default.
var defaulted = regexp.MustCompile(`(?i)\bNOT\s+NULL\s+DEFAULT\b|\bDEFAULT\s+\S+\s+NOT\s+NULL\b`)

func main() {
	previous := flag.String("previous", "deploy/upgrade/previous-release", "file naming the previous release's commit")
	flag.Parse()
	problems, err := check(*previous)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upgradecheck:", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "upgradecheck: %d problem(s): a replica of the previous release may fail beside this one (docs/operations.md#upgrades)\n", len(problems))
		os.Exit(1)
	}
	fmt.Println("upgradecheck: every migration since the previous release only expands the schema, or is marked to contract it")
}

func previousCommit(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if c, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "commit "); ok {
			return strings.TrimSpace(c), nil
		}
	}
	return "", fmt.Errorf("%s names no commit", path)
}

func git(args ...string) (string, error) {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", err
	}
	return string(out), nil
}

func check(previousFile string) ([]string, error) {
	prev, err := previousCommit(previousFile)
	if err != nil {
		return nil, err
	}
	old := map[string]string{} // path -> blob
	out, err := git("ls-tree", "-r", prev, "--", "server")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		meta, path, ok := strings.Cut(line, "\t")
		if ok && isMigration(path) {
			old[path] = strings.Fields(meta)[2]
		}
	}
	var now []string
	err = filepath.WalkDir("server", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && isMigration(path) {
			now = append(now, filepath.ToSlash(path))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(now)
	var problems []string
	present := map[string]bool{}
	for _, path := range now {
		present[path] = true
		if blob, ok := old[path]; ok {
			h, err := git("hash-object", path)
			if err != nil {
				return nil, err
			}
			if strings.TrimSpace(h) != blob {
				problems = append(problems, fmt.Sprintf("%s: changed since the previous release applied it (add a new migration instead)", path))
			}
			continue
		}
		text, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		problems = append(problems, checkNew(path, string(text))...)
	}
	for path := range old {
		if !present[path] {
			problems = append(problems, fmt.Sprintf("%s: removed, but the previous release applied it", path))
		}
	}
	sort.Strings(problems)
	return problems, nil
}

func isMigration(path string) bool {
	return strings.HasSuffix(path, ".sql") && filepath.Base(filepath.Dir(path)) == "migrations"
}

// checkNew finds contracting statements in the Up part of a migration
// added since the previous release.
func checkNew(path, text string) []string {
	up := text
	if i := strings.Index(up, "-- +goose Down"); i >= 0 {
		up = up[:i]
	}
	marked := false
	var code strings.Builder
	for _, line := range strings.Split(up, "\n") {
		t := strings.TrimSpace(line)
		if t == contractMarker {
			marked = true
		}
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		code.WriteString(line + "\n")
	}
	if marked {
		return nil
	}
	var problems []string
	for _, stmt := range strings.Split(code.String(), ";") {
		s := strings.Join(strings.Fields(stmt), " ")
		for _, c := range contracting {
			if c.re.MatchString(s) && !(c.what == "adds a required column" && defaulted.MatchString(s)) {
				problems = append(problems, fmt.Sprintf("%s: %s (%q): a replica of the previous release may still use it; expand now, contract in a later release with %q",
					path, c.what, clip(s), contractMarker))
				break
			}
		}
	}
	return problems
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
