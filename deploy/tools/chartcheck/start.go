package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
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
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

var parseDuration = time.ParseDuration

func needsPostgres(objs []object) bool {
	for _, d := range servers(objs) {
		for _, e := range container(d).Env {
			if e.Name == "DATABASE_URL" {
				return true
			}
		}
	}
	return false
}

// postgres is a throwaway cluster of scripts/pg-cluster.sh.
type postgres struct {
	script, dir, url string
	n                int
}

func startPostgres(script string) (*postgres, error) {
	dir, err := os.MkdirTemp("", "chartcheck-pg-")
	if err != nil {
		return nil, err
	}
	port, err := freePortBelow(32768)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(script, "start", dir, strconv.Itoa(port)).Output()
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	return &postgres{script: script, dir: dir, url: strings.TrimSpace(string(out))}, nil
}

// database creates a fresh database and returns its URL.
func (p *postgres) database(ctx context.Context) (string, error) {
	p.n++
	name := fmt.Sprintf("chartcheck_%d", p.n)
	psql := filepath.Join(filepath.Dir(p.script), "pg-cluster.sh")
	bindir, err := exec.Command(psql, "bindir").Output()
	if err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(strings.TrimSpace(string(bindir)), "psql"), p.url, "-c", "CREATE DATABASE "+name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("create database: %v: %s", err, out)
	}
	u := p.url[:strings.LastIndex(p.url, "/")+1] + name
	return u, nil
}

func (p *postgres) stop() {
	_ = exec.Command(p.script, "stop", p.dir).Run()
	os.RemoveAll(p.dir)
}

// usedPorts are the ports handed out already: a port is free when asked
// for and bound a moment later, so none is handed out twice.
var usedPorts = map[int]bool{}

// freePortBelow returns a port free on every interface, below limit and
// outside the ephemeral range, where outgoing connections (PostgreSQL's
// clients) could take it between the check and the bind.
func freePortBelow(limit int) (int, error) {
	start := 20000 + int(time.Now().UnixNano()%8000)
	for port := start; port < limit; port++ {
		if usedPorts[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err == nil {
			l.Close()
			usedPorts[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port below %d", limit)
}

func freePort() (int, error) { return freePortBelow(32768) }

// env is what the rendered pods see: the Secrets' values (made up here),
// the Services' addresses (loopback ports here), the mounts (directories).
type env struct {
	dir      string
	secrets  map[string]map[string]string
	services map[string]string // "name:port" -> "127.0.0.1:port"
}

// start runs the rendered Deployments' containers as processes: the
// emulator first, then two replicas of the daemon (one for the single
// profile), each until its probes pass; then stops them with SIGTERM and
// checks that they exit within the grace period.
func start(ctx context.Context, objs []object, daemon, emulator string, pg *postgres, name string) error {
	dir, err := os.MkdirTemp("", "chartcheck-"+name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e := &env{dir: dir, secrets: map[string]map[string]string{}, services: map[string]string{}}
	if err := e.makeSecrets(objs, pg, ctx); err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}()
	var daemons []*appsv1.Deployment
	for _, d := range servers(objs) {
		if isDaemon(d) {
			daemons = append(daemons, d)
			continue
		}
		// The demo emulator, reachable at its Service's name.
		p, addr, err := e.run(ctx, d, emulator, 0)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		e.services[d.Name+":9100"] = addr["cloud"]
	}
	for _, d := range daemons {
		replicas := 1
		if d.Spec.Replicas != nil && *d.Spec.Replicas > 1 {
			replicas = 2 // two replicas on one database prove the sharing
		}
		for i := 0; i < replicas; i++ {
			p, _, err := e.run(ctx, d, daemon, i)
			if err != nil {
				return err
			}
			procs = append(procs, p)
		}
		// Stop the daemons as the kubelet would, within the grace period.
		grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
		for _, p := range procs[len(procs)-replicas:] {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs[len(procs)-replicas:] {
			done := make(chan error, 1)
			go func() { done <- p.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					return fmt.Errorf("the daemon exited with %v after SIGTERM; its log: %s", err, p.Stdout)
				}
			case <-time.After(grace):
				return fmt.Errorf("the daemon did not exit within terminationGracePeriodSeconds (%s)", grace)
			}
		}
		procs = procs[:len(procs)-replicas]
	}
	return nil
}

func (e *env) makeSecrets(objs []object, pg *postgres, ctx context.Context) error {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	e.secrets["cloud"] = map[string]string{"TENCENTCLOUD_SECRET_ID": "AKIDchartcheck" + hex.EncodeToString(id), "TENCENTCLOUD_SECRET_KEY": hex.EncodeToString(id) + hex.EncodeToString(id)}
	e.secrets["tokens"] = map[string]string{"tokens": "chartcheck " + hex.EncodeToString(id) + hex.EncodeToString(id) + "\n"}
	cert, key, err := selfSigned()
	if err != nil {
		return err
	}
	e.secrets["tls"] = map[string]string{"tls.crt": cert, "tls.key": key, "ca.crt": cert}
	if pg != nil {
		url, err := pg.database(ctx)
		if err != nil {
			return err
		}
		e.secrets["postgres"] = map[string]string{"DATABASE_URL": url}
	}
	return nil
}

// secret returns a made-up value for a Secret's key; the Secret's name
// says what it holds (cloud, postgres, tokens, tls).
func (e *env) secret(name, key string) (string, bool) {
	for kind, values := range e.secrets {
		if strings.Contains(name, kind) || (kind == "tls" && strings.Contains(name, "ca")) {
			v, ok := values[key]
			return v, ok
		}
	}
	return "", false
}

// run starts one container of d as a process of binary, with the
// container's arguments and environment; its ports are moved to free
// loopback ports, its mounts to directories, the Services it names to the
// processes started before. It returns once the container's probes pass.
func (e *env) run(ctx context.Context, d *appsv1.Deployment, binary string, replica int) (*exec.Cmd, map[string]string, error) {
	c := container(d)
	root := filepath.Join(e.dir, fmt.Sprintf("%s-%d", d.Name, replica))
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, nil, err
	}
	binary, err := filepath.Abs(binary)
	if err != nil {
		return nil, nil, err
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		local := filepath.Join(root, strings.ReplaceAll(m.MountPath, "/", "_"))
		if err := os.MkdirAll(local, 0o700); err != nil {
			return nil, nil, err
		}
		mounts[m.MountPath] = local
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				mode := secretFileMode(v.Secret, d.Spec.Template.Spec.SecurityContext)
				for _, key := range []string{"tokens", "tls.crt", "tls.key", "ca.crt"} {
					if val, ok := e.secret(v.Secret.SecretName, key); ok {
						f := filepath.Join(local, key)
						if err := os.WriteFile(f, []byte(val), 0o600); err != nil {
							return nil, nil, err
						}
						if err := os.Chmod(f, mode); err != nil {
							return nil, nil, err
						}
					}
				}
			}
		}
	}
	addrs := map[string]string{}
	moved := map[string]string{} // ":9090" -> ":P"
	for _, p := range c.Ports {
		n, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		moved[fmt.Sprintf(":%d", p.ContainerPort)] = fmt.Sprintf(":%d", n)
		addrs[p.Name] = fmt.Sprintf("127.0.0.1:%d", n)
	}
	var args []string
	for _, a := range c.Args {
		for from, to := range mounts {
			a = strings.ReplaceAll(a, "="+from, "="+to)
		}
		for from, to := range e.services {
			a = strings.ReplaceAll(a, "="+from, "="+to)
		}
		if strings.HasPrefix(a, "-grpc-addr=") || strings.HasPrefix(a, "-rest-addr=") || strings.HasPrefix(a, "-metrics-addr=") || strings.HasPrefix(a, "-listen=") {
			for from, to := range moved {
				if strings.HasSuffix(a, from) {
					a = strings.TrimSuffix(a, from) + to
				}
			}
		}
		args = append(args, a)
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + root}
	for _, ev := range c.Env {
		switch {
		case ev.ValueFrom != nil && ev.ValueFrom.SecretKeyRef != nil:
			ref := ev.ValueFrom.SecretKeyRef
			v, ok := e.secret(ref.Name, ref.Key)
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, nil, fmt.Errorf("env %s: no key %s in Secret %s", ev.Name, ref.Key, ref.Name)
			}
			cmd.Env = append(cmd.Env, ev.Name+"="+v)
		case ev.ValueFrom == nil:
			cmd.Env = append(cmd.Env, ev.Name+"="+ev.Value)
		default:
			return nil, nil, fmt.Errorf("env %s: a source the check cannot provide", ev.Name)
		}
	}
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = root
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	tlsOn := false
	for _, a := range args {
		tlsOn = tlsOn || strings.HasPrefix(a, "-tls-cert=")
	}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
		if p == nil {
			continue
		}
		if err := waitProbe(ctx, p, c, addrs, tlsOn); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, nil, fmt.Errorf("%s: %w; its output:\n%s", c.Name, err, log)
		}
	}
	return cmd, addrs, nil
}

// secretFileMode is the mode the kubelet gives a Secret volume's files:
// defaultMode (0644 when unset), plus group read when the pod has an
// fsGroup (the kubelet then chowns them to that group and adds 0440).
func secretFileMode(v *corev1.SecretVolumeSource, pod *corev1.PodSecurityContext) os.FileMode {
	mode := os.FileMode(0o644)
	if v.DefaultMode != nil {
		mode = os.FileMode(*v.DefaultMode) & os.ModePerm
	}
	if pod != nil && pod.FSGroup != nil {
		mode |= 0o440
	}
	return mode
}

// waitProbe polls a probe as the kubelet would until it passes.
func waitProbe(ctx context.Context, p *corev1.Probe, c *corev1.Container, addrs map[string]string, tlsOn bool) error {
	portName := func(ip string) string {
		for _, cp := range c.Ports {
			if cp.Name == ip || strconv.Itoa(int(cp.ContainerPort)) == ip {
				return cp.Name
			}
		}
		return ip
	}
	var check func() error
	switch {
	case p.GRPC != nil:
		addr := addrs[portName(strconv.Itoa(int(p.GRPC.Port)))]
		check = func() error {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return err
			}
			defer conn.Close()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			r, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
			if err == nil && r.Status != healthpb.HealthCheckResponse_SERVING {
				err = fmt.Errorf("gRPC health: %s", r.Status)
			}
			return err
		}
	case p.HTTPGet != nil:
		scheme := "http"
		if p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		url := fmt.Sprintf("%s://%s%s", scheme, addrs[portName(p.HTTPGet.Port.String())], p.HTTPGet.Path)
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		check = func() error {
			r, err := client.Get(url)
			if err != nil {
				return err
			}
			r.Body.Close()
			if r.StatusCode >= 400 {
				return fmt.Errorf("%s: HTTP %d", url, r.StatusCode)
			}
			return nil
		}
	case p.TCPSocket != nil:
		addr := addrs[portName(p.TCPSocket.Port.String())]
		check = func() error {
			conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err == nil {
				conn.Close()
			}
			return err
		}
	}
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe never passed: %v", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func selfSigned() (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cwpexport"},
		DNSNames: []string{"localhost", "cwpexport"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})), nil
}
