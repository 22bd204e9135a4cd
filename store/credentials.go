package store

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Credential holds one SIP user's digest secrets for one realm.
//
// The plain password is never stored: only HA1 = H(username ":" realm ":"
// password) for each digest algorithm the server may offer (RFC 7616 §3.4.2,
// RFC 8760). HA1 alone lets a server verify a response; it is still a secret,
// because with it an attacker can answer challenges for this realm.
type Credential struct {
	// Username is the digest user name, as the client sends it in the
	// Authorization header. Any UTF-8 string; it is compared exactly.
	Username string
	// Realm is the protection space (RFC 7616 §3.3), usually the SIP domain.
	Realm string
	// HA1MD5 is the lowercase hex MD5 HA1 (32 characters), for MD5 and
	// MD5-sess.
	HA1MD5 string
	// HA1SHA256 is the lowercase hex SHA-256 HA1 (64 characters), for SHA-256
	// and SHA-256-sess.
	HA1SHA256 string
	// HA1SHA512256 is the lowercase hex SHA-512/256 HA1 (64 characters), for
	// SHA-512-256 (RFC 7616). Empty when the credential predates it.
	HA1SHA512256 string
	// Disabled credentials exist but must not authenticate.
	Disabled bool
	// Account optionally names the billing account or the number the user
	// presents on outbound calls. Free-form; empty means none.
	Account string
	// CreatedAt and UpdatedAt are set by the backend.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NewCredential returns an enabled credential for username in realm with the
// HA1 values for password computed. The password itself is not kept.
func NewCredential(username, realm, password string) Credential {
	c := Credential{Username: username, Realm: realm}
	c.SetPassword(password)
	return c
}

// SetPassword replaces c's HA1 values with those of password.
func (c *Credential) SetPassword(password string) {
	c.HA1MD5 = HA1("MD5", c.Username, c.Realm, password)
	c.HA1SHA256 = HA1("SHA-256", c.Username, c.Realm, password)
	c.HA1SHA512256 = HA1("SHA-512-256", c.Username, c.Realm, password)
}

// HA1For returns the stored HA1 for a digest algorithm name as it appears in
// a challenge ("MD5", "SHA-256", "SHA-512-256", with or without "-sess"), or
// "" when the credential has none for it.
func (c Credential) HA1For(algorithm string) string {
	switch strings.TrimSuffix(strings.ToUpper(algorithm), "-SESS") {
	case "", "MD5":
		return c.HA1MD5
	case "SHA-256":
		return c.HA1SHA256
	case "SHA-512-256":
		return c.HA1SHA512256
	}
	return ""
}

// HA1 computes H(username ":" realm ":" password) in lowercase hex for the
// given algorithm ("MD5", "SHA-256" or "SHA-512-256"). It returns "" for an
// unknown algorithm.
func HA1(algorithm, username, realm, password string) string {
	s := username + ":" + realm + ":" + password
	switch strings.ToUpper(algorithm) {
	case "", "MD5":
		h := md5.Sum([]byte(s))
		return hex.EncodeToString(h[:])
	case "SHA-256":
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	case "SHA-512-256":
		h := sha512.Sum512_256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	return ""
}

// Validate reports whether c can be stored: a non-empty valid UTF-8 user
// name and realm, and HA1 values of the right length in hex.
func (c Credential) Validate() error {
	switch {
	case c.Username == "" || !validText(c.Username):
		return fmt.Errorf("%w: credential user name must be non-empty UTF-8 without NUL", ErrInvalid)
	case c.Realm == "" || !validText(c.Realm):
		return fmt.Errorf("%w: credential realm must be non-empty UTF-8 without NUL", ErrInvalid)
	case !validText(c.Account):
		return fmt.Errorf("%w: credential %q: account must be UTF-8 without NUL", ErrInvalid, c.Username)
	case !isHex(c.HA1MD5, 32):
		return fmt.Errorf("%w: credential %q: MD5 HA1 must be 32 hex digits", ErrInvalid, c.Username)
	case !isHex(c.HA1SHA256, 64):
		return fmt.Errorf("%w: credential %q: SHA-256 HA1 must be 64 hex digits", ErrInvalid, c.Username)
	case c.HA1SHA512256 != "" && !isHex(c.HA1SHA512256, 64):
		return fmt.Errorf("%w: credential %q: SHA-512-256 HA1 must be 64 hex digits", ErrInvalid, c.Username)
	}
	return nil
}

// validText reports whether s can be stored as text by every backend:
// valid UTF-8 without NUL bytes (which PostgreSQL text cannot hold).
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Credentials stores digest credentials keyed by (realm, username).
type Credentials interface {
	// CreateCredential stores a new credential. It returns ErrExists when
	// one with the same realm and user name exists, ErrInvalid when
	// c.Validate fails.
	CreateCredential(ctx context.Context, c Credential) error
	// GetCredential returns the credential for username in realm, or
	// ErrNotFound.
	GetCredential(ctx context.Context, realm, username string) (Credential, error)
	// UpdateCredential replaces a credential with what update returns for
	// the current one. update may run more than once and must not have side
	// effects; an error from it aborts the update and is returned as is. The
	// realm and user name cannot change. It returns ErrNotFound when there is
	// no such credential.
	UpdateCredential(ctx context.Context, realm, username string, update func(Credential) (Credential, error)) error
	// DeleteCredential removes a credential, or returns ErrNotFound.
	DeleteCredential(ctx context.Context, realm, username string) error
	// ListCredentials returns every credential of realm ordered by user
	// name; an empty realm lists all realms.
	ListCredentials(ctx context.Context, realm string) ([]Credential, error)
}

// SetPassword is the updater that changes a credential's password.
//
//	err := creds.UpdateCredential(ctx, realm, user, store.SetPassword("new secret"))
func SetPassword(password string) func(Credential) (Credential, error) {
	return func(c Credential) (Credential, error) {
		c.SetPassword(password)
		return c, nil
	}
}

// SetDisabled is the updater that disables (true) or enables (false) a
// credential.
func SetDisabled(disabled bool) func(Credential) (Credential, error) {
	return func(c Credential) (Credential, error) {
		c.Disabled = disabled
		return c, nil
	}
}
