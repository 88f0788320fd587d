// Package waittoken signs and verifies waitpoint tokens: the bearer
// credential a task hands out (in an email link, to another system) so
// that its waitpoint can be signalled without API access.
//
// A token is "wp1.<kid>.<waitpoint>.<allow>.<expiry>.<mac>", its text
// fields base64url-encoded, its MAC HMAC-SHA256 over all of them under the
// secret of key <kid>. Verify checks the MAC in constant time before it
// looks at anything else, so a forged token learns nothing about which
// waitpoints exist. A ring holds several keys: the first signs, all of
// them verify, so a key is rotated by adding the new one first and
// removing the old one once its tokens are no longer needed.
package waittoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid is the one answer to a token that is malformed, signed by an
// unknown key, tampered with or expired: callers answer all of them alike.
var ErrInvalid = errors.New("invalid waitpoint token")

// MinSecret is the shortest secret a key may have, in bytes.
const MinSecret = 16

const (
	prefix = "wp1"
	domain = "weft-waitpoint-token-v1"
)

// Key is one signing key.
type Key struct {
	ID     string
	Secret []byte
}

// Claims are what a token says.
type Claims struct {
	Waitpoint string
	// Allow lists the signal names the waitpoint takes (empty: any).
	Allow []string
	// ExpiresAt is when the token stops working; zero means never.
	ExpiresAt time.Time
	// KeyID is the key that signed it.
	KeyID string
}

// Ring signs with its first key and verifies with any of them.
type Ring struct {
	keys []Key
}

// NewRing makes a ring of keys; it needs at least one, with distinct ids.
func NewRing(keys ...Key) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("waittoken: no signing key")
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("waittoken: key id %q is given twice", k.ID)
		}
		seen[k.ID] = true
	}
	return &Ring{keys: keys}, nil
}

func checkKey(k Key) error {
	if k.ID == "" || len(k.ID) > 64 || strings.ContainsAny(k.ID, ":,. \t\n") {
		return fmt.Errorf("waittoken: key id %q must be 1-64 characters without ':', ',', '.' or spaces", k.ID)
	}
	if len(k.Secret) < MinSecret {
		return fmt.Errorf("waittoken: key %q: its secret has %d bytes, fewer than %d", k.ID, len(k.Secret), MinSecret)
	}
	return nil
}

// ParseKeys reads keys written "kid:secret,kid2:secret2" (as
// WEFT_SIGNING_KEYS holds them), first the one that signs.
func ParseKeys(s string) ([]Key, error) {
	var keys []Key
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		id, secret, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("signing key %d: %q is not kid:secret", i+1, redact(part))
		}
		k := Key{ID: id, Secret: []byte(secret)}
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("signing key %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// redact keeps a secret out of an error message.
func redact(s string) string {
	if id, _, ok := strings.Cut(s, ":"); ok {
		return id + ":…"
	}
	if len(s) > 4 {
		return s[:4] + "…"
	}
	return s
}

// SigningKeyID is the id of the key that signs.
func (r *Ring) SigningKeyID() string { return r.keys[0].ID }

var b64 = base64.RawURLEncoding

// Sign makes a token for c, with the ring's first key.
func (r *Ring) Sign(c Claims) string {
	k := r.keys[0]
	exp := "0"
	if !c.ExpiresAt.IsZero() {
		exp = strconv.FormatInt(c.ExpiresAt.Unix(), 10)
	}
	fields := []string{prefix, b64.EncodeToString([]byte(k.ID)), b64.EncodeToString([]byte(c.Waitpoint)),
		b64.EncodeToString([]byte(strings.Join(c.Allow, ","))), exp}
	return strings.Join(fields, ".") + "." + b64.EncodeToString(mac(k.Secret, fields))
}

func mac(secret []byte, fields []string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(domain))
	for _, f := range fields {
		h.Write([]byte{'|'})
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// Verify checks a token at now and returns its claims; any failure is
// ErrInvalid.
func (r *Ring) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > 4096 {
		return Claims{}, ErrInvalid
	}
	parts := strings.Split(token, ".")
	if len(parts) != 6 || parts[0] != prefix {
		return Claims{}, ErrInvalid
	}
	kid, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, ErrInvalid
	}
	sum, err := b64.DecodeString(parts[5])
	if err != nil {
		return Claims{}, ErrInvalid
	}
	var key *Key
	for i := range r.keys {
		if r.keys[i].ID == string(kid) {
			key = &r.keys[i]
		}
	}
	if key == nil || !hmac.Equal(sum, mac(key.Secret, parts[:5])) {
		return Claims{}, ErrInvalid
	}
	wp, err := b64.DecodeString(parts[2])
	if err != nil {
		return Claims{}, ErrInvalid
	}
	allow, err := b64.DecodeString(parts[3])
	if err != nil {
		return Claims{}, ErrInvalid
	}
	exp, err := strconv.ParseInt(parts[4], 10, 64)
	if err != nil || exp < 0 {
		return Claims{}, ErrInvalid
	}
	c := Claims{Waitpoint: string(wp), KeyID: key.ID}
	if len(allow) > 0 {
		c.Allow = strings.Split(string(allow), ",")
	}
	if exp > 0 {
		c.ExpiresAt = time.Unix(exp, 0).UTC()
		if !now.Before(c.ExpiresAt) {
			return Claims{}, ErrInvalid
		}
	}
	return c, nil
}
