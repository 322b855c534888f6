package service

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

func TestPageTokensAreAuthenticatedAndStrict(t *testing.T) {
	s := New(Options{PageTokenKey: []byte("0123456789abcdef0123456789abcdef")})
	at := taskstore.Cursor{Created: time.UnixMicro(1_700_000_000_123_456), TaskID: 42}
	tok := s.encodePageToken("alice", at, taskstore.StateFinished)
	c, state, err := s.decodePageToken("alice", tok)
	if err != nil || !c.Created.Equal(at.Created) || c.TaskID != 42 || state != taskstore.StateFinished {
		t.Fatalf("round trip: %+v %q %v", c, state, err)
	}
	// Another process with the same key (sharing the registry) accepts it.
	if _, _, err := New(Options{PageTokenKey: []byte("0123456789abcdef0123456789abcdef")}).decodePageToken("alice", tok); err != nil {
		t.Errorf("a process with the same key refused the token: %v", err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	bad := map[string]string{
		"empty":           "",
		"another caller":  "",
		"another key":     New(Options{PageTokenKey: []byte("another key, another service....")}).encodePageToken("alice", at, taskstore.StateFinished),
		"task id changed": flip(16),
		"state changed":   flip(17),
		"mac changed":     flip(len(raw) - 1),
		"extended":        tok + "AA",
		"truncated":       tok[:len(tok)-2],
		"padded":          base64.URLEncoding.EncodeToString(raw),
		"standard base64": base64.RawStdEncoding.EncodeToString(raw),
		"old JSON form":   base64.RawURLEncoding.EncodeToString([]byte(`{"c":1700000000123456,"t":42,"s":"FINISHED"}`)),
	}
	for name, forged := range bad {
		caller := "alice"
		if name == "another caller" {
			forged, caller = tok, "bob"
		}
		if _, _, err := s.decodePageToken(caller, forged); err == nil {
			t.Errorf("%s: accepted %q", name, forged)
		}
	}
}
