package suite

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// proc is a child process whose memory and CPU the benchmarks read.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
}

func startProc(dir, name string, env []string, bin string, args ...string) (*proc, error) {
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd, log: log}, nil
}

// stop ends the process with SIGTERM, then SIGKILL after 5s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

// rss is the process's resident set size in bytes (VmRSS).
func (p *proc) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("%s: no VmRSS", p.name)
}

// cpu is the CPU time the process used so far (user + system).
func (p *proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitHTTP(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer: %w", url, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cluster is an emulator and the service in separate processes.
type cluster struct {
	emu, srv *proc
	emuAddr  string
	grpcAddr string
	restURL  string
	conn     *grpc.ClientConn
	client   cwpexportv1.LicenseExportServiceClient
	// conns are further connections, to spread streams and load over.
	conns []*grpc.ClientConn
}

// cloudQuota is the cloud's documented limit per action and account.
const cloudQuota = 20

// startCluster starts the emulator (tasks pending until finished through
// its admin endpoint, cloudLimit requests per second per action) and the
// service pointed at it, and dials nconns client connections to the
// service; serverArgs are extra cwpexportd flags.
func (r *Runner) startCluster(ctx context.Context, nconns, cloudLimit int, serverArgs ...string) (*cluster, error) {
	c := &cluster{}
	var err error
	if c.emuAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	restAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	creds := []string{"TENCENTCLOUD_SECRET_ID=AKIDbench" + rand.Text(), "TENCENTCLOUD_SECRET_KEY=" + rand.Text()}
	c.emu, err = startProc(r.dir, "emulator", creds, r.bin("cwp-emulator"), "-listen", c.emuAddr, "-pending", "-1s", "-rate-limit", strconv.Itoa(cloudLimit))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, "http://"+c.emuAddr+"/_emulator/stats"); err != nil {
		c.close()
		return nil, err
	}
	// A registry of its own: tasks of an earlier benchmark, still pending
	// in the registry, would share the read budget with this one's.
	dataDir, err := os.MkdirTemp(r.dir, "data-")
	if err != nil {
		c.close()
		return nil, err
	}
	args := append([]string{"-grpc-addr", grpcAddr, "-rest-addr", restAddr, "-metrics-addr", "127.0.0.1:0", "-cloud-endpoint", c.emuAddr, "-cloud-scheme", "HTTP", "-insecure-allow-private-cloud", "-log-format", "json", "-data-dir", dataDir}, serverArgs...)
	c.srv, err = startProc(r.dir, "cwpexportd", creds, r.bin("cwpexportd"), args...)
	if err != nil {
		c.close()
		return nil, err
	}
	c.grpcAddr, c.restURL = grpcAddr, "http://"+restAddr
	if err := waitHTTP(ctx, c.restURL+"/healthz"); err != nil {
		c.close()
		return nil, err
	}
	c.conn, err = grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.close()
		return nil, err
	}
	c.client = cwpexportv1.NewLicenseExportServiceClient(c.conn)
	if c.conns, err = dialN(grpcAddr, nconns); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *cluster) close() {
	closeAll(c.conns)
	if c.conn != nil {
		c.conn.Close()
	}
	c.srv.stop()
	c.emu.stop()
}

// stats reads the emulator's counters.
func (c *cluster) stats() (emulator.Stats, error) {
	var s emulator.Stats
	resp, err := http.Get("http://" + c.emuAddr + "/_emulator/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// finish makes the emulator report the task FINISHED.
func (c *cluster) finish(id string) error {
	resp, err := http.Post("http://"+c.emuAddr+"/_emulator/tasks/"+id+"/finish", "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("finish task %s: HTTP %d", id, resp.StatusCode)
	}
	return nil
}

// create starts one export through the service.
func (c *cluster) create(ctx context.Context) (string, error) {
	res, err := c.client.ExportLicenseDetail(ctx, &cwpexportv1.ExportLicenseDetailRequest{})
	return res.GetTask().GetTaskId(), err
}

// dialN opens n client connections to addr, so that many streams are
// spread over them as many clients would.
func dialN(addr string, n int) ([]*grpc.ClientConn, error) {
	var conns []*grpc.ClientConn
	for range n {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		cc.Connect()
		conns = append(conns, cc)
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		c.Close()
	}
}
