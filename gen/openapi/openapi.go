// Package openapi embeds the OpenAPI (Swagger 2.0) description that
// protoc-gen-openapiv2 generates from the protos (`make generate`).
package openapi

import _ "embed"

// JSON is the OpenAPI description of the REST API.
//
//go:embed cwpexport.swagger.json
var JSON []byte
