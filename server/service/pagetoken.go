package service

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

// A page token is the position of the last task a page listed (its number
// in the registry's order of recording, which the database assigns, so
// that it means the same to every process sharing the registry), the state
// filter it was listed with, and a MAC over both and the caller it was
// issued to, with a key the service keeps (Options.PageTokenKey, stored in
// the registry so that every process sharing it accepts the tokens of the
// others, across restarts):
//
//	version(1) seq(8) state(1) mac(16), base64url
//
// Anything else — another length, version or state, a changed byte, a
// token of another caller — is refused, version 1 tokens (a position by
// creation time, before tasks were numbered) included.
const (
	pageTokenVersion = 2
	pageTokenMACLen  = 16
	pageTokenLen     = 1 + 8 + 1 + pageTokenMACLen
	pageTokenContext = "cwpexport.v1 page token\x00"
)

// pageTokenStates numbers the state filters; the index is the stored byte.
var pageTokenStates = []string{"", taskstore.StatePending, taskstore.StateFinished, taskstore.StateError}

var pageTokenEncoding = base64.RawURLEncoding.Strict()

func (s *Service) pageTokenMAC(caller string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.opts.PageTokenKey)
	m.Write([]byte(pageTokenContext))
	m.Write([]byte(caller))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:pageTokenMACLen]
}

func (s *Service) encodePageToken(caller string, c taskstore.Cursor, state string) string {
	b := make([]byte, 0, pageTokenLen)
	b = append(b, pageTokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Seq))
	for i, st := range pageTokenStates {
		if st == state {
			b = append(b, byte(i))
		}
	}
	b = append(b, s.pageTokenMAC(caller, b)...)
	return pageTokenEncoding.EncodeToString(b)
}

var errBadPageToken = errors.New("not a page token this service issued to this caller")

func (s *Service) decodePageToken(caller, tok string) (taskstore.Cursor, string, error) {
	if len(tok) != pageTokenEncoding.EncodedLen(pageTokenLen) {
		return taskstore.Cursor{}, "", errBadPageToken
	}
	b, err := pageTokenEncoding.DecodeString(tok)
	if err != nil || len(b) != pageTokenLen {
		return taskstore.Cursor{}, "", errBadPageToken
	}
	payload, mac := b[:pageTokenLen-pageTokenMACLen], b[pageTokenLen-pageTokenMACLen:]
	if !hmac.Equal(mac, s.pageTokenMAC(caller, payload)) {
		return taskstore.Cursor{}, "", errBadPageToken
	}
	seq := int64(binary.BigEndian.Uint64(payload[1:9]))
	state := int(payload[9])
	if payload[0] != pageTokenVersion || seq <= 0 || state >= len(pageTokenStates) {
		return taskstore.Cursor{}, "", errBadPageToken
	}
	return taskstore.Cursor{Seq: seq}, pageTokenStates[state], nil
}
