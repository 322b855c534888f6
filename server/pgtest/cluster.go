package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// User is the superuser of the clusters this package starts (trust
// authentication on 127.0.0.1 and the Unix socket).
const User = "test"

// dirPrefix names the clusters' directories in the temporary directory.
const dirPrefix = "cwpexport-pg-"

// errNotInstalled means that PostgreSQL's server cannot be run here at all.
var errNotInstalled = errors.New("PostgreSQL's server is not installed")

// errPortTaken means that the port chosen was taken before the server
// bound it.
var errPortTaken = errors.New("the port was taken")

// startTimeout bounds a cluster's start-up (crash recovery included) on
// busy cores.
const startTimeout = 90 * time.Second

// Cluster is a PostgreSQL cluster of its own, in a temporary directory.
type Cluster struct {
	dir  string // data/, the log, the Unix socket
	bin  string
	port int
	cred *syscall.Credential // the postgres user when running as root

	mu     sync.Mutex
	cmd    *exec.Cmd // the postmaster; nil while stopped
	exited chan struct{}
	paused []int // processes stopped by Pause
}

// NewCluster starts a private cluster for the test, which may stop, start
// and stall it; it is stopped and removed when the test ends. Without
// PostgreSQL the test is skipped (see the package's documentation).
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		if err := c.destroy(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// Port is the cluster's TCP port at 127.0.0.1; it stays the same across
// Stop and Start.
func (c *Cluster) Port() int { return c.port }

// URL is the URL of database on the cluster, as the superuser.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, c.port, database)
}

func (c *Cluster) adminURL() string { return c.URL("postgres") }

// DSN returns the URL of a new, empty database on the cluster, named after
// the test. It goes with the cluster.
func (c *Cluster) DSN(t testing.TB) string {
	t.Helper()
	dsn, _, err := createDatabase(context.Background(), c.adminURL(), t.Name())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// Stop shuts the cluster down (a fast shutdown: sessions are ended) and
// waits for it; its data stays for Start.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Start starts the stopped cluster again, on the same port and data, and
// waits until it accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatalf("pgtest: start the cluster again: %v", err)
	}
}

// Pause stops (SIGSTOP) the postmaster and every one of its processes: the
// server keeps its connections and its port, and answers nothing, as a
// stalled machine would. resume (SIGCONT) undoes it; it also runs when the
// test ends.
func (c *Cluster) Pause(t testing.TB) (resume func()) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		t.Fatal("pgtest: Pause of a stopped cluster")
	}
	if c.paused != nil {
		t.Fatal("pgtest: Pause of a paused cluster")
	}
	// The postmaster first, so that it forks nothing meanwhile.
	pm := c.cmd.Process.Pid
	c.paused = []int{pm}
	if err := syscall.Kill(pm, syscall.SIGSTOP); err != nil {
		t.Fatalf("pgtest: stop the postmaster: %v", err)
	}
	for _, pid := range children(pm) {
		if syscall.Kill(pid, syscall.SIGSTOP) == nil {
			c.paused = append(c.paused, pid)
		}
	}
	var once sync.Once
	resume = func() { once.Do(c.resume) }
	t.Cleanup(resume)
	return resume
}

// Stall pauses the cluster (see Pause) for d and then resumes it; the
// channel is closed once it is resumed. It returns at once.
func (c *Cluster) Stall(t testing.TB, d time.Duration) <-chan struct{} {
	t.Helper()
	resume := c.Pause(t)
	done := make(chan struct{})
	timer := time.AfterFunc(d, func() { resume(); close(done) })
	t.Cleanup(func() {
		if timer.Stop() {
			resume()
			close(done)
		}
	})
	return done
}

func (c *Cluster) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pid := range c.paused {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	c.paused = nil
}

// startCluster creates a cluster in a new temporary directory and starts
// it on a free port.
func startCluster() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	reapStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin, cred: cred}
	fail := func(err error) (*Cluster, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	// The owner's pid lets a later run remove the directory of a test
	// binary that died without cleaning up.
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fail(err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", User,
		"--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w: %s", err, bytes.TrimSpace(out)))
	}
	for range 5 {
		if c.port, err = FreePort(); err != nil {
			return fail(err)
		}
		if err = c.start(); !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		return fail(err)
	}
	return c, nil
}

// start runs the postmaster and waits until it accepts connections.
func (c *Cluster) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return errors.New("the cluster is running")
	}
	logPath := filepath.Join(c.dir, "log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logStart, _ := logFile.Seek(0, 2)
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", filepath.Join(c.dir, "data"),
		"-p", strconv.Itoa(c.port), "-k", c.dir, "-c", "listen_addresses=127.0.0.1",
		// A throwaway cluster: speed over durability.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300")
	cmd.Dir = c.dir
	// A file, not the test's output: go test waits for its pipes to close.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: a test binary that dies takes its cluster with it
	// (SIGQUIT is PostgreSQL's immediate shutdown). Setpgid keeps a
	// terminal's ^C for the test binary, which stops the cluster itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			out := readFrom(logPath, logStart)
			if strings.Contains(out, "Address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("postgres exited at start-up: %s", out)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgconn.Connect(ctx, c.adminURL())
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			c.cmd, c.exited = cmd, exited
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			<-exited
			return fmt.Errorf("postgres did not accept connections within %s: %w; its log: %s", startTimeout, err, readFrom(logPath, logStart))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop shuts the postmaster down (fast shutdown) and waits for it.
func (c *Cluster) stop() error {
	c.resume()
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	select {
	case <-exited:
	case <-time.After(startTimeout):
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		<-exited
		return fmt.Errorf("postgres did not shut down within %s", startTimeout)
	}
	return nil
}

// destroy stops the cluster and removes its directory.
func (c *Cluster) destroy() error {
	err := c.stop()
	return errors.Join(err, os.RemoveAll(c.dir))
}

// readFrom returns the log from offset on, for error messages.
func readFrom(path string, offset int64) string {
	b, _ := os.ReadFile(path)
	if int64(len(b)) < offset {
		offset = 0
	}
	b = bytes.TrimSpace(b[offset:])
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// binDir finds the directory of initdb and postgres: CWPEXPORT_PG_BINDIR,
// else Debian's newest /usr/lib/postgresql/<version>/bin, else PATH.
func binDir() (string, error) {
	hasServer := func(d string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(d, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv(EnvBinDir); d != "" {
		if !hasServer(d) {
			return "", fmt.Errorf("%s=%s holds no initdb and postgres", EnvBinDir, d)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && hasServer(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("%w (no initdb and postgres in /usr/lib/postgresql/*/bin or on PATH)", errNotInstalled)
}

// serverUser is the user the server runs as: initdb and postgres refuse
// root, so as root they run as the postgres user; otherwise as the
// current user.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: as root the server must run as the postgres user, and there is none (%v)", errNotInstalled, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("the postgres user's ids: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// reapStale removes the directories of clusters whose test binary died
// without removing them (a crash, a timeout's panic); their servers died
// with it (Pdeathsig).
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		owner, err := readPid(filepath.Join(d, "owner"))
		if err != nil || alive(owner) {
			continue
		}
		if pm, err := readPid(filepath.Join(d, "data", "postmaster.pid")); err == nil && alive(pm) {
			continue
		}
		_ = os.RemoveAll(d)
	}
}

// readPid reads the number on the first line of a file.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds no pid", path)
	}
	return pid, nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// children returns the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
