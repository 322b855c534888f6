package service

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"

	"github.com/cwpexport/cwpexport/server/taskstore"
)

// A page token is the position of the last task a page listed (its number
// in the registry's order of recording, which the database assigns, so
// that it means the same to every process sharing the registry) and the
// state filter it was listed with, encrypted and authenticated (AES-256-GCM)
// for the caller it was issued to, with a key derived from the one the
// service keeps (Options.PageTokenKey, stored in the registry so that every
// process sharing it accepts the tokens of the others, across restarts):
//
//	version(1) nonce(12) sealed(seq(8) state(1)) tag(16), base64url
//
// A caller learns nothing from a token (not how many tasks were recorded
// before its own), and can change nothing in it. Anything else — another
// length or version, a changed byte, a token of another caller — is
// refused, the signed tokens of earlier versions included.
const (
	pageTokenVersion  = 3
	pageTokenNonceLen = 12
	pageTokenPlainLen = 8 + 1
	pageTokenLen      = 1 + pageTokenNonceLen + pageTokenPlainLen + 16
	pageTokenContext  = "cwpexport.v1 page token\x00"
)

// pageTokenStates numbers the state filters; the index is the stored byte.
var pageTokenStates = []string{"", taskstore.StatePending, taskstore.StateFinished, taskstore.StateError}

var pageTokenEncoding = base64.RawURLEncoding.Strict()

// pageTokenAEAD is the cipher of page tokens, under a key of its own
// derived from PageTokenKey.
func (s *Service) pageTokenAEAD() cipher.AEAD {
	m := hmac.New(sha256.New, s.opts.PageTokenKey)
	m.Write([]byte(pageTokenContext + "key"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // a SHA-256 sum is a valid AES-256 key
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// pageTokenAD binds a token to its version and its caller.
func pageTokenAD(caller string) []byte {
	return append([]byte{pageTokenVersion}, pageTokenContext+caller...)
}

// sealPageToken encrypts a token's plaintext for caller.
func (s *Service) sealPageToken(caller string, plain []byte) string {
	b := make([]byte, 1+pageTokenNonceLen, pageTokenLen)
	b[0] = pageTokenVersion
	_, _ = rand.Read(b[1:])
	b = s.pageTokenAEAD().Seal(b, b[1:], plain, pageTokenAD(caller))
	return pageTokenEncoding.EncodeToString(b)
}

func (s *Service) encodePageToken(caller string, c taskstore.Cursor, state string) string {
	plain := binary.BigEndian.AppendUint64(make([]byte, 0, pageTokenPlainLen), uint64(c.Seq))
	for i, st := range pageTokenStates {
		if st == state {
			plain = append(plain, byte(i))
		}
	}
	return s.sealPageToken(caller, plain)
}

var errBadPageToken = errors.New("not a page token this service issued to this caller")

func (s *Service) decodePageToken(caller, tok string) (taskstore.Cursor, string, error) {
	if len(tok) != pageTokenEncoding.EncodedLen(pageTokenLen) {
		return taskstore.Cursor{}, "", errBadPageToken
	}
	b, err := pageTokenEncoding.DecodeString(tok)
	if err != nil || len(b) != pageTokenLen || b[0] != pageTokenVersion {
		return taskstore.Cursor{}, "", errBadPageToken
	}
	plain, err := s.pageTokenAEAD().Open(nil, b[1:1+pageTokenNonceLen], b[1+pageTokenNonceLen:], pageTokenAD(caller))
	if err != nil || len(plain) != pageTokenPlainLen {
		return taskstore.Cursor{}, "", errBadPageToken
	}
	seq := int64(binary.BigEndian.Uint64(plain[:8]))
	state := int(plain[8])
	if seq <= 0 || state >= len(pageTokenStates) {
		return taskstore.Cursor{}, "", errBadPageToken
	}
	return taskstore.Cursor{Seq: seq}, pageTokenStates[state], nil
}
