package emulator

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

// The test-side signer must agree with the SDK byte for byte, otherwise the
// hand-signed tests below would prove nothing.
func TestTestSignerMatchesSDK(t *testing.T) {
	s := startServer(t, Options{})
	c := sdkClient(s, testID, testKey)
	var got *http.Request
	var body []byte
	c.WithHttpTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got, body = r, readBody(t, r)
		return http.DefaultTransport.RoundTrip(r)
	}))
	if err := sdkCall(t, c, APIVersion, "ExportLicenseDetail", map[string]any{"IsHistory": true}, nil); err != nil {
		t.Fatalf("SDK request rejected: %v", err)
	}
	unix, err := strconv.ParseInt(got.Header.Get("X-TC-Timestamp"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	want := testAuthorization(testID, testKey, got.Host, got.Header.Get("Content-Type"), string(body), unix)
	if g := got.Header.Get("Authorization"); g != want {
		t.Fatalf("SDK Authorization\n %s\ntest signer\n %s", g, want)
	}
}

func TestAuthenticationWithSDK(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now, RateLimit: -1})

	tests := []struct {
		name     string
		id, key  string
		skew     time.Duration // emulator clock offset from the SDK's
		token    string
		wantCode string
	}{
		{name: "valid", id: testID, key: testKey},
		{name: "second credential", id: otherID, key: otherKey},
		{name: "wrong key", id: testID, key: otherKey, wantCode: codeSignatureFailure},
		{name: "unknown id", id: unknownID, key: testKey, wantCode: codeSecretIDNotFound},
		{name: "emulator 10 min ahead", id: testID, key: testKey, skew: 10 * time.Minute, wantCode: codeSignatureExpire},
		{name: "emulator 10 min behind", id: testID, key: testKey, skew: -10 * time.Minute, wantCode: codeSignatureExpire},
		{name: "emulator 4 min ahead", id: testID, key: testKey, skew: 4 * time.Minute},
		{name: "session token", id: testID, key: testKey, token: "tok", wantCode: codeTokenFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Advance(tt.skew)
			defer clock.Advance(-tt.skew)
			c := sdkClient(s, tt.id, tt.key)
			if tt.token != "" {
				c.WithCredential(common.NewTokenCredential(tt.id, tt.key, tt.token))
			}
			err := sdkCall(t, c, APIVersion, "ExportLicenseDetail", nil, nil)
			if got := errCode(t, err); got != tt.wantCode {
				t.Fatalf("code %q, want %q (err %v)", got, tt.wantCode, err)
			}
		})
	}

	st := s.Stats().Actions["ExportLicenseDetail"]
	if st.Requests != int64(len(tests)) || st.TasksCreated != 3 {
		t.Errorf("stats %+v: want %d requests, 3 tasks", st, len(tests))
	}
	for code, n := range map[string]int64{codeSignatureFailure: 1, codeSecretIDNotFound: 1, codeSignatureExpire: 2, codeTokenFailure: 1} {
		if st.Errors[code] != n {
			t.Errorf("Errors[%s] = %d, want %d", code, st.Errors[code], n)
		}
	}
}

// The SDK signs; a transport then swaps the body, as a tampering proxy would.
func TestTamperedBodyAfterSDKSigning(t *testing.T) {
	s := startServer(t, Options{})
	c := sdkClient(s, testID, testKey)
	c.WithHttpTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		b := strings.Replace(string(readBody(t, r)), "false", "true", 1)
		r.Body = http.NoBody
		r2 := r.Clone(r.Context())
		r2.Body, r2.ContentLength = readCloser(b), int64(len(b))
		return http.DefaultTransport.RoundTrip(r2)
	}))
	err := sdkCall(t, c, APIVersion, "ExportLicenseDetail", map[string]any{"IsHistory": false}, nil)
	if got := errCode(t, err); got != codeSignatureFailure {
		t.Fatalf("code %q, want %s", got, codeSignatureFailure)
	}
	if n := s.Stats().Actions["ExportLicenseDetail"].TasksCreated; n != 0 {
		t.Fatalf("tampered request created %d tasks", n)
	}
}

func TestAuthenticationHandSigned(t *testing.T) {
	s := startServer(t, Options{RateLimit: -1})
	now := time.Now().Unix()
	setHeader := func(k, v string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set(k, v) }
	}
	editAuth := func(old, new string) func(*http.Request) {
		return func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), old, new, 1))
		}
	}
	tests := []struct {
		name     string
		req      signedRequest
		wantCode string
	}{
		{"valid", signedRequest{body: `{}`}, ""},
		{"valid with whitespace body", signedRequest{body: " { } "}, ""},
		{"tampered body", signedRequest{signBody: `{}`, body: `{"IsHistory":true}`}, codeSignatureFailure},
		{"timestamp 6 min old", signedRequest{body: `{}`, timestamp: now - 360}, codeSignatureExpire},
		{"timestamp 6 min ahead", signedRequest{body: `{}`, timestamp: now + 360}, codeSignatureExpire},
		{"timestamp 4 min old", signedRequest{body: `{}`, timestamp: now - 240}, ""},
		{"timestamp header differs from signed", signedRequest{body: `{}`, mutate: setHeader("X-TC-Timestamp", itoa(now-1))}, codeSignatureFailure},
		{"timestamp missing", signedRequest{body: `{}`, mutate: func(r *http.Request) { r.Header.Del("X-TC-Timestamp") }}, codeMissingParameter},
		{"timestamp garbage", signedRequest{body: `{}`, mutate: setHeader("X-TC-Timestamp", "soon")}, codeInvalidParameterValue},
		{"host changed", signedRequest{body: `{}`, mutate: func(r *http.Request) { r.Host = "cwp.tencentcloudapi.com" }}, codeSignatureFailure},
		{"content-type case differs", signedRequest{body: `{}`, mutate: setHeader("Content-Type", "Application/JSON")}, ""},
		{"missing authorization", signedRequest{body: `{}`, mutate: func(r *http.Request) { r.Header.Del("Authorization") }}, codeInvalidAuthorization},
		{"other scheme", signedRequest{body: `{}`, mutate: setHeader("Authorization", "Bearer abc")}, codeInvalidAuthorization},
		{"no signature", signedRequest{body: `{}`, mutate: editAuth(", Signature=", ", Sig=")}, codeInvalidAuthorization},
		{"host not signed", signedRequest{body: `{}`, mutate: editAuth("SignedHeaders=content-type;host", "SignedHeaders=content-type")}, codeInvalidAuthorization},
		{"short credential", signedRequest{body: `{}`, mutate: editAuth("/tc3_request", "")}, codeInvalidAuthorization},
		{"scope service", signedRequest{body: `{}`, mutate: editAuth("/cwp/", "/cvm/")}, codeSignatureFailure},
		{"credential with extra part", signedRequest{body: `{}`, mutate: editAuth("Credential="+testID+"/", "Credential="+testID+"/1999-01-01/x")}, codeInvalidAuthorization},
		{"signature upper-case", signedRequest{body: `{}`, mutate: func(r *http.Request) {
			a := r.Header.Get("Authorization")
			i := strings.Index(a, "Signature=") + len("Signature=")
			r.Header.Set("Authorization", a[:i]+strings.ToUpper(a[i:]))
		}}, codeSignatureFailure},
		{"unknown secret id", signedRequest{id: unknownID, key: testKey, body: `{}`}, codeSecretIDNotFound},
		{"bad version", signedRequest{body: `{}`, version: "2017-01-01"}, codeNoSuchVersion},
		{"missing version", signedRequest{body: `{}`, mutate: func(r *http.Request) { r.Header.Del("X-TC-Version") }}, codeMissingParameter},
		{"missing action", signedRequest{body: `{}`, mutate: func(r *http.Request) { r.Header.Del("X-TC-Action") }}, codeMissingParameter},
		{"bad language", signedRequest{body: `{}`, mutate: setHeader("X-TC-Language", "fr-FR")}, codeInvalidParameterValue},
		{"english", signedRequest{body: `{}`, mutate: setHeader("X-TC-Language", "en-US")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.action = "ExportLicenseDetail"
			code, resp := s.do(t, tt.req)
			if code != tt.wantCode {
				t.Fatalf("code %q, want %q: %v", code, tt.wantCode, resp)
			}
		})
	}

	// A date that is well-formed but not the timestamp's UTC date.
	t.Run("scope date mismatch", func(t *testing.T) {
		today := time.Unix(now, 0).UTC().Format(time.DateOnly)
		code, resp := s.do(t, signedRequest{action: "ExportLicenseDetail", body: `{}`, mutate: editAuth("/"+today+"/", "/1999-01-01/")})
		if code != codeSignatureFailure {
			t.Fatalf("code %q: %v", code, resp)
		}
	})
}

func TestSDKVersionAndAction(t *testing.T) {
	s := startServer(t, Options{})
	c := sdkClient(s, testID, testKey)
	if got := errCode(t, sdkCall(t, c, "2017-01-01", "ExportTasks", nil, nil)); got != codeNoSuchVersion {
		t.Errorf("bad version: %q", got)
	}
	if got := errCode(t, sdkCall(t, c, APIVersion, "DescribeMachines", nil, nil)); got != codeInvalidAction {
		t.Errorf("unknown action: %q", got)
	}
	st := s.Stats()
	if st.Unattributed.Requests != 1 || st.Unattributed.Errors[codeInvalidAction] != 1 {
		t.Errorf("unattributed stats %+v", st.Unattributed)
	}
	if st.Actions["ExportTasks"].Errors[codeNoSuchVersion] != 1 {
		t.Errorf("ExportTasks stats %+v", st.Actions["ExportTasks"])
	}
}

func TestMethodAndPath(t *testing.T) {
	s := startServer(t, Options{})
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, s.url("/"), nil)
		if code, _ := doRaw(t, req); code != codeUnsupportedProtocol {
			t.Errorf("%s /: code %q", m, code)
		}
	}
	for _, p := range []string{"/v3", "/downloads/", "/_emulator/nope"} {
		res, err := http.Post(s.url(p), "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: status %d", p, res.StatusCode)
		}
	}
	big := `{"Tags":[` + strings.Repeat(`{"TagKey":"k","TagValue":"v"},`, 40000) + `{"TagKey":"k"}]}`
	if code, _ := s.do(t, signedRequest{action: "ExportLicenseDetail", body: big}); code != codeRequestSizeLimitExceeds {
		t.Errorf("oversized body: code %q", code)
	}
}

// The SDK's UnsignedPayload option signs the literal UNSIGNED-PAYLOAD.
func TestUnsignedPayload(t *testing.T) {
	s := startServer(t, Options{})
	prof := profile.NewClientProfile()
	prof.HttpProfile.Endpoint = s.addr
	prof.HttpProfile.Scheme = "HTTP"
	prof.UnsignedPayload = true
	c := common.NewCommonClient(common.NewCredential(testID, testKey), "", prof)
	if err := sdkCall(t, c, APIVersion, "ExportLicenseDetail", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	for name, opts := range map[string]Options{
		"no credentials":   {},
		"empty key":        {Credentials: map[string]string{testID: ""}},
		"empty id":         {Credentials: map[string]string{"": testKey}},
		"negative records": {Credentials: map[string]string{testID: testKey}, Records: -1},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("%s: New accepted %+v", name, opts)
		}
	}
}
