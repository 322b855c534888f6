package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
)

// Expiring download URLs (Options.DownloadTTL). Like a pre-signed object
// storage URL, each ExportTasks answer mints a URL valid for the TTL:
// ?Expires=<Unix milliseconds>&Signature=<HMAC-SHA256 of token and expiry
// under a key only this emulator knows>. A URL past its expiry, or with a
// wrong signature, is answered 403 AccessDenied as object storage does.

// signedDownloadURL is the download URL an ExportTasks answer carries.
func (e *Emulator) signedDownloadURL(r *http.Request, token string) string {
	u := downloadURL(r, token)
	if e.downloadTTL <= 0 {
		return u
	}
	exp := strconv.FormatInt(e.now().Add(e.downloadTTL).UnixMilli(), 10)
	return u + "?Expires=" + exp + "&Signature=" + e.urlSignature(token, exp)
}

func (e *Emulator) urlSignature(token, expires string) string {
	m := hmac.New(sha256.New, e.urlKey)
	m.Write([]byte(token + "\n" + expires))
	return hex.EncodeToString(m.Sum(nil))
}

// refuseExpired answers 403 and returns true when downloads expire and r's
// URL is expired or not signed by this emulator.
func (e *Emulator) refuseExpired(w http.ResponseWriter, r *http.Request, token string) bool {
	if e.downloadTTL <= 0 {
		return false
	}
	q := r.URL.Query()
	exp := q.Get("Expires")
	ms, err := strconv.ParseInt(exp, 10, 64)
	valid := err == nil && hmac.Equal([]byte(e.urlSignature(token, exp)), []byte(q.Get("Signature")))
	msg := "Request has expired"
	switch {
	case !valid:
		msg = "The request signature we calculated does not match the signature you provided"
	case e.now().After(time.UnixMilli(ms)):
	default:
		return false
	}
	e.stats.expired()
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte("<?xml version='1.0' encoding='utf-8' ?>\n<Error><Code>AccessDenied</Code><Message>" + msg + "</Message></Error>\n"))
	return true
}
