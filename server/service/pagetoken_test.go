package service

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

var testPageKey = []byte("0123456789abcdef0123456789abcdef")

func TestPageTokensAreAuthenticatedAndStrict(t *testing.T) {
	s := New(Options{PageTokenKey: testPageKey})
	at := taskstore.Cursor{Seq: 42}
	tok := s.encodePageToken("alice", at, taskstore.StateFinished)
	c, state, err := s.decodePageToken("alice", tok)
	if err != nil || c != at || state != taskstore.StateFinished {
		t.Fatalf("round trip: %+v %q %v", c, state, err)
	}
	// Another process with the same key (sharing the registry) accepts it.
	if _, _, err := New(Options{PageTokenKey: testPageKey}).decodePageToken("alice", tok); err != nil {
		t.Errorf("a process with the same key refused the token: %v", err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	bad := map[string]string{
		"empty":          "",
		"another caller": "",
		"another key":    New(Options{PageTokenKey: []byte("another key, another service....")}).encodePageToken("alice", at, taskstore.StateFinished),
		"version 2, signed by the key": base64.RawURLEncoding.EncodeToString(append([]byte{2, 0, 0, 0, 0, 0, 0, 0, 42, 2},
			make([]byte, pageTokenLen-10)...)),
		"position 0":      s.sealPageToken("alice", []byte{0, 0, 0, 0, 0, 0, 0, 0, 2}),
		"negative":        s.sealPageToken("alice", []byte{0x80, 0, 0, 0, 0, 0, 0, 1, 2}),
		"unknown state":   s.sealPageToken("alice", []byte{0, 0, 0, 0, 0, 0, 0, 42, 4}),
		"short plaintext": s.sealPageToken("alice", []byte{0, 0, 0, 0, 0, 0, 0, 42}),
		"extended":        tok + "AA",
		"truncated":       tok[:len(tok)-2],
		"padded":          base64.URLEncoding.EncodeToString(raw),
		"standard base64": standardBase64(t, s),
		"old JSON form":   base64.RawURLEncoding.EncodeToString([]byte(`{"c":1700000000123456,"t":42,"s":"FINISHED"}`)),
	}
	for i := range raw {
		bad[fmt.Sprintf("byte %d changed", i)] = flip(i)
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

// TestPageTokensAreOpaque: a token does not show the recording number it
// holds (which tells how many tasks every caller created), nor repeat for
// the same position.
func TestPageTokensAreOpaque(t *testing.T) {
	s := New(Options{PageTokenKey: testPageKey})
	seen := map[string]bool{}
	for _, seq := range []int64{3, 3, 300, 70_000} {
		tok := s.encodePageToken("bob", taskstore.Cursor{Seq: seq}, "")
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		if bytes.Contains(raw, binary.BigEndian.AppendUint64(nil, uint64(seq))) {
			t.Errorf("the token of position %d shows it: %x", seq, raw)
		}
		if seen[tok] {
			t.Errorf("position %d gave a token seen before", seq)
		}
		seen[tok] = true
	}
}

// standardBase64 is a valid token in standard base64 rather than base64url:
// one whose encodings differ (it has a byte that encodes to + or /).
func standardBase64(t *testing.T, s *Service) string {
	for range 10000 {
		tok := s.encodePageToken("alice", taskstore.Cursor{Seq: 1}, "")
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		if std := base64.RawStdEncoding.EncodeToString(raw); std != tok {
			return std
		}
	}
	t.Fatal("no token differs between the encodings")
	return ""
}
