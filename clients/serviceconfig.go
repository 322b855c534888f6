// Package clients holds what the service's clients share. Its Go part is
// the gRPC service config of service-config.json, which the CLI dials with
// and docs/clients.md documents for clients in any language.
package clients

import _ "embed" // for ServiceConfig

// ServiceConfig is the gRPC service config for clients of
// cwpexport.v1.LicenseExportService (JSON): the round_robin policy over
// every address the target resolves to, and retries on UNAVAILABLE for the
// read methods — before a stream's first message, as gRPC retries — never
// for the creation methods.
//
//go:embed service-config.json
var ServiceConfig string
