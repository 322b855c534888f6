package app

import (
	"errors"
	"strings"

	"github.com/cwpexport/cwpexport/server/filefetch"
)

// checkCloudScheme refuses plain HTTP to a real cloud: its answers carry
// the download URLs the service then fetches, and anyone on the path
// could rewrite them. An emulator (or a private endpoint the operator
// vouches for with AllowPrivateCloud) may be spoken to in HTTP.
func (o *Options) checkCloudScheme() error {
	if strings.EqualFold(o.Scheme, "HTTP") && o.SecretID != "" && !o.AllowPrivateCloud {
		return errors.New("refusing to call the cloud over plain HTTP with real credentials (-cloud-scheme HTTP): " +
			"use HTTPS, or pass -insecure-allow-private-cloud when the cloud is an emulator on a private or loopback address")
	}
	return nil
}

// downloadClient is the download proxy's HTTP client: public HTTPS
// destinations only, unless the cloud is the embedded emulator or the
// operator allowed a private cloud.
func (s *Server) downloadClient() filefetch.Options {
	return filefetch.Options{AllowPrivate: s.opts.AllowPrivateCloud || s.emu != nil}
}
