package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	tc3Algorithm   = "TC3-HMAC-SHA256"
	tc3Terminator  = "tc3_request"
	maxClockSkew   = 5 * time.Minute
	unsignedMarker = "UNSIGNED-PAYLOAD"
)

// tc3Auth is a parsed TC3 Authorization header.
type tc3Auth struct {
	secretID      string
	date          string // credential-scope date, YYYY-MM-DD
	service       string
	signedHeaders []string // lower-case, in the order given
	signedRaw     string   // SignedHeaders exactly as sent
	signature     string
}

// authenticate verifies the TC3-HMAC-SHA256 signature of r and returns the
// caller's SecretId. The checks and their codes are listed in the package
// comment; the order matters because clients branch on the code.
func (e *Emulator) authenticate(r *http.Request, body []byte, now time.Time) (string, *apiError) {
	auth, aerr := parseAuthorization(r.Header.Get("Authorization"))
	if aerr != nil {
		return "", aerr
	}
	key, ok := e.creds[auth.secretID]
	if !ok {
		return "", newError(codeSecretIDNotFound, "The SecretId is not found, please ensure that your SecretId is correct.")
	}

	tsRaw := r.Header.Get("X-TC-Timestamp")
	if tsRaw == "" {
		return "", newError(codeMissingParameter, "The request is missing the required parameter `Timestamp` (header X-TC-Timestamp).")
	}
	ts, err := strconv.ParseInt(tsRaw, 10, 64)
	if err != nil {
		return "", newError(codeInvalidParameterValue, "The value of X-TC-Timestamp must be Unix seconds.")
	}
	signedAt := time.Unix(ts, 0)
	if d := now.Sub(signedAt); d > maxClockSkew || d < -maxClockSkew {
		return "", newError(codeSignatureExpire,
			"Signature expired: the timestamp %d differs from server time %d by more than 5 minutes.", ts, now.Unix())
	}

	if auth.service != Service {
		return "", newError(codeSignatureFailure, "The credential scope service `%s` does not match `%s`.", auth.service, Service)
	}
	if want := signedAt.UTC().Format(time.DateOnly); auth.date != want {
		return "", newError(codeSignatureFailure, "The credential scope date `%s` does not match the UTC date of X-TC-Timestamp (%s).", auth.date, want)
	}

	expected := tc3Signature(key, auth, r, body, tsRaw)
	if !hmac.Equal([]byte(expected), []byte(auth.signature)) {
		return "", newError(codeSignatureFailure, "The provided credentials could not be validated. Please check your signature is correct.")
	}

	if r.Header.Get("X-TC-Token") != "" {
		// Permanent keys carry no token; the emulator issues no temporary ones.
		return "", newError(codeTokenFailure, "The token is invalid: this account has no temporary credentials.")
	}
	return auth.secretID, nil
}

// parseAuthorization parses
// "TC3-HMAC-SHA256 Credential=<id>/<date>/<service>/tc3_request, SignedHeaders=a;b, Signature=<hex>".
func parseAuthorization(h string) (*tc3Auth, *apiError) {
	invalid := func(why string) (*tc3Auth, *apiError) {
		return nil, newError(codeInvalidAuthorization, "The Authorization header is invalid: %s.", why)
	}
	if h == "" {
		return invalid("it is missing")
	}
	alg, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || alg != tc3Algorithm {
		return invalid("the algorithm must be " + tc3Algorithm)
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return invalid("malformed element")
		}
		if _, dup := fields[k]; dup {
			return invalid("duplicate " + k)
		}
		fields[k] = v
	}
	cred, signed, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signed == "" || sig == "" || len(fields) != 3 {
		return invalid("it must hold exactly Credential, SignedHeaders and Signature")
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 4 || scope[0] == "" || scope[3] != tc3Terminator {
		return invalid("Credential must be SecretId/date/service/" + tc3Terminator)
	}
	if _, err := time.Parse(time.DateOnly, scope[1]); err != nil {
		return invalid("the Credential date must be YYYY-MM-DD")
	}
	a := &tc3Auth{
		secretID:  scope[0],
		date:      scope[1],
		service:   scope[2],
		signedRaw: signed,
		signature: sig,
	}
	var hasCT, hasHost bool
	for name := range strings.SplitSeq(signed, ";") {
		if name == "" || name != strings.ToLower(name) {
			return invalid("SignedHeaders must be lower-case names separated by ';'")
		}
		hasCT = hasCT || name == "content-type"
		hasHost = hasHost || name == "host"
		a.signedHeaders = append(a.signedHeaders, name)
	}
	if !hasCT || !hasHost {
		return invalid("SignedHeaders must include content-type and host")
	}
	return a, nil
}

// tc3Signature computes the hex signature the client should have sent.
func tc3Signature(secretKey string, a *tc3Auth, r *http.Request, body []byte, timestamp string) string {
	var canon strings.Builder
	canon.WriteString(r.Method)
	canon.WriteString("\n/\n")
	canon.WriteString(r.URL.RawQuery)
	canon.WriteByte('\n')
	for _, name := range a.signedHeaders {
		v := r.Header.Get(name)
		if name == "host" {
			v = r.Host // net/http moves Host out of the header map
		}
		canon.WriteString(name)
		canon.WriteByte(':')
		canon.WriteString(strings.ToLower(strings.TrimSpace(v)))
		canon.WriteByte('\n')
	}
	canon.WriteByte('\n')
	canon.WriteString(a.signedRaw)
	canon.WriteByte('\n')
	if r.Header.Get("X-TC-Content-SHA256") == unsignedMarker {
		canon.WriteString(sha256Hex([]byte(unsignedMarker)))
	} else {
		canon.WriteString(sha256Hex(body))
	}

	scope := a.date + "/" + a.service + "/" + tc3Terminator
	stringToSign := tc3Algorithm + "\n" + timestamp + "\n" + scope + "\n" + sha256Hex([]byte(canon.String()))

	k := hmacSHA256([]byte("TC3"+secretKey), a.date)
	k = hmacSHA256(k, a.service)
	k = hmacSHA256(k, tc3Terminator)
	return hex.EncodeToString(hmacSHA256(k, stringToSign))
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
