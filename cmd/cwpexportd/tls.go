package main

import "github.com/cwpexport/cwpexport/server/app"

// restScheme is the scheme of the REST port's URL.
func restScheme(o app.Options) string {
	if o.TLSCertFile != "" {
		return "https://"
	}
	return "http://"
}
