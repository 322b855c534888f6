package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cwpexport/cwpexport/server/testserver"
)

// TestJSONInAnotherCharsetIsToldToSendUTF8: a POST whose JSON says another
// charset is refused with 415, and the message says what the body must be.
func TestJSONInAnotherCharsetIsToldToSendUTF8(t *testing.T) {
	env := testserver.Start(t, testserver.Config{})
	req, _ := http.NewRequest(http.MethodPost, env.RESTURL+"/v1/license-detail:export", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json; charset=latin1")
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var st struct{ Message string }
	if err := json.Unmarshal(b, &st); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("HTTP %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(st.Message, "UTF-8 JSON") {
		t.Errorf("the message %q does not say that the body must be UTF-8 JSON", st.Message)
	}
}
