package main

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// daemonFlags reads the flags the daemon accepts from its own -h: name to
// whether it takes a value (non-boolean).
func daemonFlags(daemon string) (map[string]bool, error) {
	out, _ := exec.Command(daemon, "-h").CombinedOutput() // -h exits 0 or 2 by Go version
	flags := map[string]bool{}
	re := regexp.MustCompile(`(?m)^  -([a-z][-a-z0-9]*)(?: (\S+))?`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = m[2] != ""
	}
	if len(flags) < 10 {
		return nil, fmt.Errorf("%s -h listed %d flags: %s", daemon, len(flags), out)
	}
	return flags, nil
}

// server returns the daemon's container and its pod of the Deployments.
func servers(objs []object) (out []*appsv1.Deployment) {
	for _, o := range objs {
		if d, ok := o.Value.(*appsv1.Deployment); ok {
			out = append(out, d)
		}
	}
	return out
}

func container(d *appsv1.Deployment) *corev1.Container { return &d.Spec.Template.Spec.Containers[0] }

func isDaemon(d *appsv1.Deployment) bool { return container(d).Name == "cwpexportd" }

// flagValue returns the value of -name in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v, true
		}
		if a == "-"+name {
			return "true", true
		}
	}
	return "", false
}

func checkObjects(objs []object, flags map[string]bool) error {
	var errs []error
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.Kind]++
		if o.Kind == "Secret" || o.Kind == "ConfigMap" {
			errs = append(errs, fmt.Errorf("%s %s rendered: secrets and configuration come from existing Secrets only", o.Kind, o.Name))
		}
	}
	found := false
	for _, d := range servers(objs) {
		if isDaemon(d) {
			found = true
			errs = append(errs, checkDaemon(d, flags)...)
		}
		errs = append(errs, checkPod(d)...)
	}
	if !found {
		errs = append(errs, errors.New("no cwpexportd Deployment rendered"))
	}
	if kinds["Service"] < 2 {
		errs = append(errs, errors.New("want a Service and a headless Service"))
	}
	return errors.Join(errs...)
}

// checkDaemon checks the daemon's arguments and probes against the flags
// it accepts and the ports those arguments make it listen on.
func checkDaemon(d *appsv1.Deployment, flags map[string]bool) []error {
	var errs []error
	c := container(d)
	for _, a := range c.Args {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		takesValue, ok := flags[name]
		switch {
		case !strings.HasPrefix(a, "-"):
			errs = append(errs, fmt.Errorf("argument %q is not a flag", a))
		case !ok:
			errs = append(errs, fmt.Errorf("argument %q: the daemon has no flag -%s", a, name))
		case takesValue && !hasValue:
			errs = append(errs, fmt.Errorf("argument %q: -%s takes a value", a, name))
		case !takesValue && hasValue && value != "true" && value != "false":
			errs = append(errs, fmt.Errorf("argument %q: -%s is boolean", a, name))
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	listen := map[string]int32{}
	for _, name := range []string{"grpc", "rest", "metrics"} {
		addr, ok := flagValue(c.Args, name+"-addr")
		if !ok {
			errs = append(errs, fmt.Errorf("no -%s-addr: the daemon would listen on loopback only", name))
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		if err != nil || (host != "0.0.0.0" && host != "" && host != "::") {
			errs = append(errs, fmt.Errorf("-%s-addr=%s: not reachable from outside the pod", name, addr))
		}
		listen[name] = int32(n)
		if ports[name] != int32(n) {
			errs = append(errs, fmt.Errorf("container port %q is %d but -%s-addr listens on %d", name, ports[name], name, n))
		}
	}
	tls := false
	if _, ok := flagValue(c.Args, "tls-cert"); ok {
		tls = true
	}
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	for kind, p := range probes {
		if p == nil {
			errs = append(errs, fmt.Errorf("no %s probe", kind))
			continue
		}
		errs = append(errs, checkProbe(kind, p, ports, listen, tls)...)
	}
	if c.StartupProbe != nil && c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold < 360 {
		errs = append(errs, fmt.Errorf("the startup probe gives up after %ds, before a replica waiting for another's migration (6 min)",
			c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold))
	}
	// The drain: preStop, then up to the shutdown grace for calls in
	// flight, then creations in their cloud call (up to -create-timeout).
	pre := int64(0)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		pre = c.Lifecycle.PreStop.Sleep.Seconds
	} else {
		errs = append(errs, errors.New("no preStop sleep: the pod would drain while still in the Service's endpoints"))
	}
	need := pre + shutdownGraceSeconds + createTimeoutSeconds(c.Args)
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < need {
		errs = append(errs, fmt.Errorf("terminationGracePeriodSeconds %v is shorter than preStop %ds + drain %ds + creations %ds",
			deref(g), pre, shutdownGraceSeconds, createTimeoutSeconds(c.Args)))
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		errs = append(errs, errors.New("requests (cpu, memory) and a memory limit are needed"))
	}
	return errs
}

// shutdownGraceSeconds is the service's bound on calls in flight at
// shutdown (app.Options.ShutdownGrace, not a flag).
const shutdownGraceSeconds = 10

// createTimeoutSeconds is -create-timeout as rendered, else its default.
func createTimeoutSeconds(args []string) int64 {
	if v, ok := flagValue(args, "create-timeout"); ok {
		if d, err := parseSeconds(v); err == nil {
			return d
		}
	}
	return 20
}

func deref(p *int64) any {
	if p == nil {
		return "unset"
	}
	return *p
}

func checkProbe(kind string, p *corev1.Probe, ports, listen map[string]int32, tls bool) []error {
	var errs []error
	port := func(ip intstr.IntOrString) (string, bool) {
		if ip.Type == intstr.String {
			_, ok := ports[ip.StrVal]
			return ip.StrVal, ok
		}
		for name, n := range listen {
			if n == ip.IntVal {
				return name, true
			}
		}
		return "", false
	}
	switch {
	case p.GRPC != nil:
		if p.GRPC.Port != listen["grpc"] {
			errs = append(errs, fmt.Errorf("%s probe: gRPC health on port %d, the daemon serves gRPC on %d", kind, p.GRPC.Port, listen["grpc"]))
		}
		if tls {
			errs = append(errs, fmt.Errorf("%s probe: the kubelet's gRPC probe has no TLS, the port does", kind))
		}
	case p.HTTPGet != nil:
		name, ok := port(p.HTTPGet.Port)
		if !ok || name != "rest" {
			errs = append(errs, fmt.Errorf("%s probe: HTTP on %s, not the REST port", kind, p.HTTPGet.Port.String()))
		}
		want := map[string]string{"startup": "/livez", "liveness": "/livez", "readiness": "/healthz"}[kind]
		if p.HTTPGet.Path != want {
			errs = append(errs, fmt.Errorf("%s probe: path %s, want %s", kind, p.HTTPGet.Path, want))
		}
		if (p.HTTPGet.Scheme == corev1.URISchemeHTTPS) != tls {
			errs = append(errs, fmt.Errorf("%s probe: scheme %s, the port's TLS is %v", kind, p.HTTPGet.Scheme, tls))
		}
	case p.TCPSocket != nil:
		if _, ok := port(p.TCPSocket.Port); !ok {
			errs = append(errs, fmt.Errorf("%s probe: TCP port %s is not one the daemon listens on", kind, p.TCPSocket.Port.String()))
		}
	default:
		errs = append(errs, fmt.Errorf("%s probe: no handler", kind))
	}
	return errs
}

// checkPod checks the restricted security context of every container.
func checkPod(d *appsv1.Deployment) []error {
	var errs []error
	ps := d.Spec.Template.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errs = append(errs, fmt.Errorf("%s: the pod must run as non-root with the RuntimeDefault seccomp profile", d.Name))
	}
	if d.Spec.Template.Spec.AutomountServiceAccountToken == nil || *d.Spec.Template.Spec.AutomountServiceAccountToken {
		errs = append(errs, fmt.Errorf("%s: the service account token must not be mounted", d.Name))
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		s := c.SecurityContext
		ok := s != nil && s.AllowPrivilegeEscalation != nil && !*s.AllowPrivilegeEscalation &&
			s.ReadOnlyRootFilesystem != nil && *s.ReadOnlyRootFilesystem &&
			s.RunAsNonRoot != nil && *s.RunAsNonRoot && s.Capabilities != nil &&
			len(s.Capabilities.Drop) == 1 && s.Capabilities.Drop[0] == "ALL" && len(s.Capabilities.Add) == 0
		if !ok {
			errs = append(errs, fmt.Errorf("%s/%s: the security context must be restricted (no privilege escalation, read-only root, non-root, all capabilities dropped)", d.Name, c.Name))
		}
		for _, e := range c.Env {
			if e.Value != "" && (strings.Contains(e.Name, "SECRET") || strings.Contains(e.Name, "TOKEN") || e.Name == "DATABASE_URL") {
				errs = append(errs, fmt.Errorf("%s/%s: %s is inline; it must come from a Secret", d.Name, c.Name, e.Name))
			}
		}
	}
	return errs
}

func parseSeconds(v string) (int64, error) {
	d, err := parseDuration(v)
	return int64(d.Seconds() + 0.999), err
}
