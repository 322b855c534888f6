package callerauth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CertIdentity says which part of a verified client certificate names its
// caller under mutual TLS.
type CertIdentity string

// The certificate identities.
const (
	// CertNone: client certificates do not name callers.
	CertNone CertIdentity = ""
	// CertCN: the subject's common name, as Kubernetes names its users.
	CertCN CertIdentity = "cn"
	// CertSAN: the first subject alternative name, looking at URIs (such
	// as SPIFFE IDs) first, then DNS names, then e-mail addresses.
	CertSAN CertIdentity = "san"
)

// maxNameLen bounds a caller name taken from a certificate.
const maxNameLen = 256

// ParseCertIdentity reads a -tls-client-identity value.
func ParseCertIdentity(s string) (CertIdentity, error) {
	switch c := CertIdentity(strings.ToLower(s)); c {
	case CertCN, CertSAN:
		return c, nil
	}
	return CertNone, fmt.Errorf("client identity %q: want cn or san", s)
}

// Name returns the caller a verified client certificate names.
func (c CertIdentity) Name(cert *x509.Certificate) (string, error) {
	var name string
	switch c {
	case CertCN:
		name = cert.Subject.CommonName
	case CertSAN:
		switch {
		case len(cert.URIs) > 0:
			name = cert.URIs[0].String()
		case len(cert.DNSNames) > 0:
			name = cert.DNSNames[0]
		case len(cert.EmailAddresses) > 0:
			name = cert.EmailAddresses[0]
		}
	default:
		return "", errors.New("client certificates do not name callers")
	}
	switch {
	case name == "":
		return "", fmt.Errorf("the client certificate has no %s to name its caller", c.describe())
	case len(name) > maxNameLen || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		return "", fmt.Errorf("the client certificate's %s is not usable as a caller name (at most %d printable characters)", c.describe(), maxNameLen)
	}
	return name, nil
}

func (c CertIdentity) describe() string {
	if c == CertCN {
		return "subject common name (CN)"
	}
	return "URI, DNS or e-mail subject alternative name (SAN)"
}
