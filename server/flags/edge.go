package flags

import (
	"flag"

	"github.com/cwpexport/cwpexport/server/app"
	"github.com/cwpexport/cwpexport/server/edge"
)

// edgeFlags defines the flags of the bounds on what anyone who can reach
// the ports may cost before authentication (docs/security.md).
func edgeFlags(fs *flag.FlagSet, o *app.EdgeOptions) {
	fs.IntVar(&o.GRPCMaxHeaderBytes, "grpc-max-header-bytes", app.DefaultGRPCMaxHeaderBytes, "largest metadata (HTTP/2 header list) of a gRPC call; larger calls are reset unread")
	fs.IntVar(&o.GRPCMaxConns, "grpc-max-conns", edge.DefaultMaxConns, "open connections the gRPC port holds; more are closed as they come")
	fs.IntVar(&o.GRPCMaxConnsPerPeer, "grpc-max-conns-per-peer", edge.DefaultMaxConnsPerPeer, "open gRPC connections per peer IP address; more are closed as they come")
	fs.DurationVar(&o.GRPCHandshakeTimeout, "grpc-handshake-timeout", app.DefaultGRPCHandshakeTimeout, "time a new gRPC connection has to finish its TLS handshake and HTTP/2 preface")
	fs.DurationVar(&o.GRPCMaxConnectionIdle, "grpc-max-connection-idle", app.DefaultGRPCMaxConnectionIdle, "a gRPC connection without calls for this long is closed (GOAWAY)")
	fs.Float64Var(&o.GRPCResetsPerSecond, "grpc-resets-per-second", edge.DefaultResetsPerSecond, "streams per second a gRPC connection's client may cancel (reset) before the connection is closed")
	fs.IntVar(&o.GRPCResetBurst, "grpc-reset-burst", edge.DefaultResetBurst, "streams a gRPC connection's client may cancel at once above -grpc-resets-per-second")
	fs.Float64Var(&o.AuthFailuresPerSecond, "auth-failures-per-second", edge.DefaultAuthFailuresPerSecond, "failed authentications per second per peer IP address; past them calls are refused unchecked (429, RESOURCE_EXHAUSTED with RetryInfo)")
	fs.IntVar(&o.AuthFailureBurst, "auth-failure-burst", edge.DefaultAuthFailureBurst, "failed authentications a peer may make at once above -auth-failures-per-second")
	fs.DurationVar(&o.DropBan, "edge-drop-ban", edge.DefaultDropBan, "how long a peer whose gRPC connection was closed for abuse is refused new connections")
	fs.DurationVar(&o.ReportInterval, "edge-report-interval", edge.DefaultReportInterval, "a peer's repeated refusals (failed authentications, refused connections) are logged once per this interval")
}
