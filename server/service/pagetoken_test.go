package service

import (
	"encoding/base64"
	"encoding/binary"
	"testing"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

func TestPageTokensAreAuthenticatedAndStrict(t *testing.T) {
	s := New(Options{PageTokenKey: []byte("0123456789abcdef0123456789abcdef")})
	at := taskstore.Cursor{Seq: 42}
	tok := s.encodePageToken("alice", at, taskstore.StateFinished)
	c, state, err := s.decodePageToken("alice", tok)
	if err != nil || c != at || state != taskstore.StateFinished {
		t.Fatalf("round trip: %+v %q %v", c, state, err)
	}
	// Another process with the same key (sharing the registry) accepts it.
	if _, _, err := New(Options{PageTokenKey: []byte("0123456789abcdef0123456789abcdef")}).decodePageToken("alice", tok); err != nil {
		t.Errorf("a process with the same key refused the token: %v", err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	// signed is a token with a valid MAC around any payload.
	signed := func(payload []byte) string {
		return base64.RawURLEncoding.EncodeToString(append(payload, s.pageTokenMAC("alice", payload)...))
	}
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	bad := map[string]string{
		"empty":             "",
		"another caller":    "",
		"another key":       New(Options{PageTokenKey: []byte("another key, another service....")}).encodePageToken("alice", at, taskstore.StateFinished),
		"position changed":  flip(8),
		"state changed":     flip(9),
		"version 1, signed": signed(append(append([]byte{1}, binary.BigEndian.AppendUint64(nil, 1_700_000_000_123_456)...), append(binary.BigEndian.AppendUint64(nil, 42), 2)...)),
		"version 3, signed": signed([]byte{3, 0, 0, 0, 0, 0, 0, 0, 42, 2}),
		"position 0":        signed([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 2}),
		"negative position": signed([]byte{2, 0x80, 0, 0, 0, 0, 0, 0, 1, 2}),
		"unknown state":     signed([]byte{2, 0, 0, 0, 0, 0, 0, 0, 42, 4}),
		"mac changed":       flip(len(raw) - 1),
		"extended":          tok + "AA",
		"truncated":         tok[:len(tok)-2],
		"padded":            base64.URLEncoding.EncodeToString(raw),
		"standard base64":   standardBase64(t, s),
		"old JSON form":     base64.RawURLEncoding.EncodeToString([]byte(`{"c":1700000000123456,"t":42,"s":"FINISHED"}`)),
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

// standardBase64 is a valid token in standard base64 rather than base64url:
// one whose encodings differ (it has a byte that encodes to + or /).
func standardBase64(t *testing.T, s *Service) string {
	for seq := int64(1); seq < 10000; seq++ {
		tok := s.encodePageToken("alice", taskstore.Cursor{Seq: seq}, "")
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		if std := base64.RawStdEncoding.EncodeToString(raw); std != tok {
			return std
		}
	}
	t.Fatal("no token differs between the encodings")
	return ""
}
