package main

import (
	"errors"
	"log/slog"

	"github.com/cwpexport/cwpexport/server/secretfile"
)

// secretFiles checks the files that hold secrets (the tokens file, the TLS
// key): readable by others, they are refused, or only warned about when
// the operator allowed it.
type secretFiles struct {
	allowReadable bool
	log           *slog.Logger
}

func (s secretFiles) check(paths ...string) error {
	for _, p := range paths {
		if p == "" {
			continue
		}
		err := secretfile.Check(p)
		var readable *secretfile.ReadableError
		switch {
		case errors.As(err, &readable) && s.allowReadable:
			s.log.Warn("a secret file is readable by others (-insecure-allow-readable-secrets)", "err", err)
		case errors.As(err, &readable):
			return errors.New(err.Error() + " (or pass -insecure-allow-readable-secrets)")
		case err != nil:
			return err
		}
	}
	return nil
}
