package clients_test

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cwpexport/cwpexport/clients"
	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
)

// TestServiceConfig: grpc-go accepts the service config, and its retry
// policy names exactly the read methods of the service, on UNAVAILABLE
// only: never a creation, which only a request id makes safe to repeat.
func TestServiceConfig(t *testing.T) {
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(clients.ServiceConfig))
	if err != nil {
		t.Fatalf("grpc-go refuses the service config: %v", err)
	}
	conn.Close()

	var cfg struct {
		LoadBalancingConfig []map[string]json.RawMessage
		MethodConfig        []struct {
			Name        []struct{ Service, Method string }
			RetryPolicy *struct {
				MaxAttempts          int
				RetryableStatusCodes []string
			}
		}
		RetryThrottling *struct{ MaxTokens int }
	}
	if err := json.Unmarshal([]byte(clients.ServiceConfig), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.LoadBalancingConfig) != 1 || cfg.LoadBalancingConfig[0]["round_robin"] == nil {
		t.Errorf("loadBalancingConfig %v, want round_robin", cfg.LoadBalancingConfig)
	}
	if cfg.RetryThrottling == nil {
		t.Error("no retryThrottling: a fleet's clients could retry in a storm")
	}
	svc := cwpexportv1.File_cwpexport_v1_license_export_proto.Services().ByName("LicenseExportService")
	var retried []string
	for _, mc := range cfg.MethodConfig {
		if mc.RetryPolicy == nil {
			continue
		}
		if !slices.Equal(mc.RetryPolicy.RetryableStatusCodes, []string{"UNAVAILABLE"}) || mc.RetryPolicy.MaxAttempts < 2 {
			t.Errorf("retry policy %+v, want UNAVAILABLE only and at least 2 attempts", *mc.RetryPolicy)
		}
		for _, n := range mc.Name {
			if n.Service != string(svc.FullName()) || svc.Methods().ByName(protoreflect.Name(n.Method)) == nil {
				t.Errorf("the retry policy names %s/%s, which the API does not have", n.Service, n.Method)
			}
			retried = append(retried, n.Method)
		}
	}
	slices.Sort(retried)
	want := []string{"DownloadExport", "GetBudgetStatus", "GetExportTask", "ListExportTasks", "WatchExportTask"}
	if !slices.Equal(retried, want) {
		t.Errorf("retried methods %v, want the reads %v", retried, want)
	}
}

// TestServiceConfigCopies: the Python package ships the same service
// config (clients/generate.sh copies it).
func TestServiceConfigCopies(t *testing.T) {
	for _, path := range []string{"python/src/cwpexport_client/service_config.json"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != clients.ServiceConfig {
			t.Errorf("%s differs from service-config.json: run make generate-clients", path)
		}
	}
}
