package emulator_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"

	"github.com/cwpexport/cwpexport/server/cloud"
	"github.com/cwpexport/cwpexport/server/emulator"
)

// The emulator stands in for the cloud's CWP API: the real SDK (here
// through package cloud) signs and sends its requests to a loopback port.
func Example() {
	// The emulator's clock: the example moves it past PendingFor.
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	id, key := emulator.NewDevCredential()
	emu, err := emulator.New(emulator.Options{Credentials: map[string]string{id: key}, PendingFor: time.Second, Now: clock})
	if err != nil {
		panic(err)
	}
	defer emu.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = emu.Serve(ctx, lis) }()

	c := cloud.New(cloud.Config{Credential: common.NewCredential(id, key), Endpoint: lis.Addr().String(), Scheme: "HTTP"})
	created, err := c.ExportLicenseDetail(ctx, cloud.ExportParams{})
	if err != nil {
		panic(err)
	}
	st, _ := c.ExportTasks(ctx, created.TaskID)
	fmt.Println(st.Status)
	offset.Add(int64(2 * time.Second)) // past PendingFor
	st, _ = c.ExportTasks(ctx, created.TaskID)
	fmt.Println(st.Status)
	// Output:
	// PENDING
	// FINISHED
}
