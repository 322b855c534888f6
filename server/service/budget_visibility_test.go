package service_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	cwpexportv1 "github.com/cwpexport/cwpexport/gen/cwpexport/v1"
	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/callerauth"
	"github.com/cwpexport/cwpexport/server/emulator"
	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestBudgetStatusHidesOtherCallersActivity: after alice exports, bob sees
// the budget's rates and quota but not the account's calls or followed
// tasks; an operator sees them all.
func TestBudgetStatusHidesOtherCallersActivity(t *testing.T) {
	const alice, bob, olga = "alice-token-0123456789ab", "bob-token-0123456789abcd", "olga-token-0123456789abc"
	tokens, err := callerauth.ParseTokens("alice " + alice + "\nbob " + bob + "\nolga " + olga + "\nrole operator olga")
	if err != nil {
		t.Fatal(err)
	}
	env := testserver.Start(t, testserver.Config{
		Emulator: emulator.Options{PendingFor: time.Hour},
		App:      app.Options{Tokens: tokens, ReadRate: 7, CreateRate: 9},
	})
	as := func(token string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if _, err := env.Client.ExportLicenseDetail(as(alice), &cwpexportv1.ExportLicenseDetailRequest{}); err != nil {
		t.Fatal(err)
	}
	status := func(token string) *cwpexportv1.GetBudgetStatusResponse {
		st, err := env.Client.GetBudgetStatus(as(token), &cwpexportv1.GetBudgetStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	calls := func(st *cwpexportv1.GetBudgetStatusResponse) (n int32) {
		for _, a := range st.GetActions() {
			for _, c := range a.GetCallsPerSecond() {
				n += c
			}
		}
		return n
	}
	// Whole seconds only: the creation's call shows once its second is over.
	ops := status(olga)
	for deadline := time.Now().Add(10 * time.Second); calls(ops) == 0 && time.Now().Before(deadline); ops = status(olga) {
		time.Sleep(100 * time.Millisecond)
	}
	if calls(ops) == 0 || ops.GetReadBudgetTasks() != 1 {
		t.Errorf("the operator sees %d calls and %d tasks, want alice's", calls(ops), ops.GetReadBudgetTasks())
	}
	other := status(bob)
	if calls(other) != 0 || len(other.GetActions()[0].GetCallsPerSecond()) != 0 || other.GetReadBudgetTasks() != 0 || !other.GetActivityWithheld() {
		t.Errorf("bob sees the account's activity: %d calls, %d tasks, withheld %v", calls(other), other.GetReadBudgetTasks(), other.GetActivityWithheld())
	}
	if ops.GetActivityWithheld() {
		t.Error("the operator's answer says the activity is withheld")
	}
	for i, want := range []float64{7, 9} {
		a := other.GetActions()[i]
		if a.GetConfiguredRate() != want || a.GetEffectiveRate() != want || a.GetCloudQuota() != 20 {
			t.Errorf("bob's %s: configured %v effective %v quota %v, want %v %v 20", a.GetAction(), a.GetConfiguredRate(), a.GetEffectiveRate(), a.GetCloudQuota(), want, want)
		}
	}
}
