// Command chartcheck checks the Helm chart deploy/helm/cwpexport as strictly
// as the code: for each case of a matrix of values it renders the chart
// with helm, decodes every object strictly into its Kubernetes API type,
// checks that the daemon's arguments are flags the daemon accepts (as its
// own -h prints them), that its probes name ports it listens on, that the
// drain fits the grace period and the security context is restricted; the
// cases marked to run are started: the daemon (and the demo emulator) with
// the rendered arguments and environment, against a throwaway PostgreSQL
// for a fleet, until their probes pass. Cases that must fail are rendered
// and must be refused. With -write DIR it also writes the profiles'
// manifests (deploy/kubernetes/).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// aCase is one set of values.
type aCase struct {
	name string
	// files are values files, relative to the chart; set are --set values.
	files []string
	set   []string
	// run starts the rendered daemon; fail is a part of the error helm
	// must give instead of rendering.
	run  bool
	fail string
}

var cases = []aCase{
	{name: "single", files: []string{"profiles/single.yaml"}, run: true},
	{name: "fleet", files: []string{"profiles/fleet.yaml"}, run: true},
	{name: "defaults-unauthenticated", set: []string{"insecure.allowUnauthenticated=true"}, run: true},
	{name: "single-tls", files: []string{"profiles/single.yaml"}, set: []string{"tls.secret=cwpexport-tls", "insecure.allowCleartextTokens=false"}, run: true},
	{name: "fleet-mtls-real-cloud", files: []string{"profiles/fleet.yaml"}, set: []string{
		"emulator.enabled=false", "cloud.endpoint=cwp.tencentcloudapi.com:443", "tls.secret=cwpexport-tls",
		"tls.clientCASecret=cwpexport-client-ca", "tls.clientIdentity=san", "insecure.allowCleartextTokens=false"}},
	{name: "fleet-every-option", files: []string{"profiles/fleet.yaml"}, set: []string{
		"replicas=5", "networkPolicy.enabled=true", "serviceMonitor.enabled=true", "prometheusRule.enabled=true",
		"gatewayAPI.enabled=true", "gatewayAPI.parentRefs[0].name=edge", "gatewayAPI.hostnames[0]=cwpexport.example.com",
		"restAllowedHosts[0]=cwpexport.internal", "extraArgs[0]=-heartbeat=2s", "extraArgs[1]=-max-follow-age=12h",
		"image.digest=sha256:" + strings.Repeat("ab", 32), "persistence.storageClassName=fast", "cloud.region=ap-guangzhou"}, run: true},
	{name: "single-existing-claim", files: []string{"profiles/single.yaml"}, set: []string{"persistence.existingClaim=registry"}},
	// Refused at install time.
	{name: "unknown-value", set: []string{"replica=3"}, fail: "additional properties 'replica' not allowed"},
	{name: "misspelled-nested-value", set: []string{"drain.preStop=5"}, fail: "additional properties 'preStop' not allowed"},
	{name: "unknown-profile", set: []string{"profile=cluster"}, fail: "profile"},
	{name: "fleet-without-database", set: []string{"profile=fleet", "cloud.credentialsSecret=c"}, fail: "postgres.existingSecret"},
	{name: "fleet-without-cloud", set: []string{"profile=fleet", "postgres.existingSecret=p"}, fail: "cloud.credentialsSecret"},
	{name: "grace-shorter-than-drain", set: []string{"drain.preStopSeconds=20", "drain.terminationGracePeriodSeconds=40"}, fail: "terminationGracePeriodSeconds"},
	{name: "inline-secret-value", set: []string{"cloud.secretKey=AKID"}, fail: "additional properties 'secretKey' not allowed"},
	{name: "rate-above-the-cloud", set: []string{"readRate=25"}, fail: "readRate"},
}

func main() {
	var (
		helm     = flag.String("helm", "helm", "helm binary")
		chart    = flag.String("chart", "deploy/helm/cwpexport", "the chart")
		daemon   = flag.String("daemon", "bin/cwpexportd", "cwpexportd built from this commit")
		emulator = flag.String("emulator", "bin/cwp-emulator", "cwp-emulator built from this commit")
		pgScript = flag.String("pg-cluster", "scripts/pg-cluster.sh", "the throwaway PostgreSQL cluster script")
		write    = flag.String("write", "", "write the profiles' manifests under this directory (deploy/kubernetes) and check nothing else")
		only     = flag.String("only", "", "comma-separated case names (default: all)")
	)
	flag.Parse()
	if err := run(*helm, *chart, *daemon, *emulator, *pgScript, *write, *only); err != nil {
		fmt.Fprintln(os.Stderr, "chartcheck:", err)
		os.Exit(1)
	}
}

func run(helm, chart, daemon, emulator, pgScript, write, only string) error {
	if write != "" {
		return writeManifests(helm, chart, write)
	}
	flags, err := daemonFlags(daemon)
	if err != nil {
		return err
	}
	for _, profile := range []string{"single", "fleet"} {
		if out, err := exec.Command(helm, "lint", "--strict", chart, "-f", filepath.Join(chart, "profiles", profile+".yaml")).CombinedOutput(); err != nil {
			return fmt.Errorf("helm lint --strict (%s): %v\n%s", profile, err, out)
		}
	}
	var pg *postgres
	defer func() {
		if pg != nil {
			pg.stop()
		}
	}()
	failed := 0
	for _, c := range cases {
		if only != "" && !contains(strings.Split(only, ","), c.name) {
			continue
		}
		err := checkCase(c, helm, chart, flags, func(objs []object) error {
			if !c.run {
				return nil
			}
			if pg == nil && needsPostgres(objs) {
				var err error
				if pg, err = startPostgres(pgScript); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			return start(ctx, objs, daemon, emulator, pg, c.name)
		})
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", c.name, err)
			continue
		}
		fmt.Printf("ok   %s\n", c.name)
	}
	if failed > 0 {
		return fmt.Errorf("%d case(s) failed", failed)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// render runs helm template for a case.
func render(helm, chart string, c aCase) ([]byte, error) {
	args := []string{"template", "cwpexport", chart, "--namespace", "cwpexport"}
	for _, f := range c.files {
		args = append(args, "-f", filepath.Join(chart, f))
	}
	for _, s := range c.set {
		args = append(args, "--set", s)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func checkCase(c aCase, helm, chart string, flags map[string]bool, then func([]object) error) error {
	out, err := render(helm, chart, c)
	if c.fail != "" {
		if err == nil {
			return fmt.Errorf("rendered; want a refusal saying %q", c.fail)
		}
		if !strings.Contains(err.Error(), c.fail) {
			return fmt.Errorf("refused, but not saying %q: %v", c.fail, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	objs, err := decodeAll(out)
	if err != nil {
		return err
	}
	if err := checkObjects(objs, flags); err != nil {
		return err
	}
	return then(objs)
}

// writeManifests renders each profile into DIR/PROFILE/cwpexport.yaml, with
// a kustomization.yaml listing it.
func writeManifests(helm, chart, dir string) error {
	for _, profile := range []string{"single", "fleet"} {
		out, err := render(helm, chart, aCase{files: []string{"profiles/" + profile + ".yaml"}})
		if err != nil {
			return err
		}
		d := filepath.Join(dir, profile)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		head := fmt.Sprintf("# Generated by `make manifests` from deploy/helm/cwpexport with profiles/%s.yaml: do not edit.\n", profile)
		if err := os.WriteFile(filepath.Join(d, "cwpexport.yaml"), append([]byte(head), out...), 0o644); err != nil {
			return err
		}
		kust := head + "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: cwpexport\nresources:\n  - cwpexport.yaml\n"
		if err := os.WriteFile(filepath.Join(d, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
			return err
		}
	}
	return nil
}
