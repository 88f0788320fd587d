package waittoken

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	now  = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	key1 = Key{ID: "k1", Secret: []byte("0123456789abcdef0123")}
	key2 = Key{ID: "k2", Secret: []byte("fedcba9876543210fedc")}
)

func ring(t *testing.T, keys ...Key) *Ring {
	t.Helper()
	r, err := NewRing(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSignVerify(t *testing.T) {
	r := ring(t, key1)
	c := Claims{Waitpoint: "01934f1c-aaaa-7bbb-8ccc-000000000001", Allow: []string{"approve", "reject"}, ExpiresAt: now.Add(time.Hour)}
	tok := r.Sign(c)
	got, err := r.Verify(tok, now)
	if err != nil || got.Waitpoint != c.Waitpoint || !slices.Equal(got.Allow, c.Allow) || !got.ExpiresAt.Equal(c.ExpiresAt) || got.KeyID != "k1" {
		t.Fatalf("verify = %+v, %v", got, err)
	}
	if _, err := r.Verify(tok, now.Add(time.Hour)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an expired token: %v", err)
	}
	forever := r.Sign(Claims{Waitpoint: "w"})
	if got, err := r.Verify(forever, now.AddDate(10, 0, 0)); err != nil || !got.ExpiresAt.IsZero() || got.Allow != nil {
		t.Fatalf("a token without expiry: %+v %v", got, err)
	}
}

func TestTampered(t *testing.T) {
	r := ring(t, key1)
	tok := r.Sign(Claims{Waitpoint: "wp", Allow: []string{"approve"}})
	parts := strings.Split(tok, ".")
	for i := 1; i < 6; i++ {
		p := slices.Clone(parts)
		p[i] = b64.EncodeToString([]byte("other"))
		if i == 4 {
			p[i] = "99999999999"
		}
		if _, err := r.Verify(strings.Join(p, "."), now); !errors.Is(err, ErrInvalid) {
			t.Fatalf("field %d changed: %v", i, err)
		}
	}
	if _, err := ring(t, key2).Verify(tok, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token of another deployment: %v", err)
	}
	for _, bad := range []string{"", "wp1", "wp2.a.b.c.d.e", strings.Repeat("x", 5000), tok + "."} {
		if _, err := r.Verify(bad, now); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestRotation(t *testing.T) {
	old := ring(t, key1)
	tok := old.Sign(Claims{Waitpoint: "wp"})
	both := ring(t, key2, key1)
	if _, err := both.Verify(tok, now); err != nil {
		t.Fatalf("the old key no longer verifies while still in the ring: %v", err)
	}
	if newTok := both.Sign(Claims{Waitpoint: "wp"}); !strings.HasPrefix(newTok, "wp1."+b64.EncodeToString([]byte("k2"))+".") {
		t.Fatalf("the ring does not sign with its first key: %s", newTok)
	}
	if _, err := ring(t, key2).Verify(tok, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a removed key still verifies: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	keys, err := ParseKeys("k2:fedcba9876543210fedc, k1:0123456789abcdef0123")
	if err != nil || len(keys) != 2 || keys[0].ID != "k2" || string(keys[1].Secret) != "0123456789abcdef0123" {
		t.Fatalf("parse = %+v %v", keys, err)
	}
	for _, bad := range []string{"", "k1", "k1:short", ":0123456789abcdef", "a b:0123456789abcdef"} {
		if _, err := ParseKeys(bad); err == nil {
			t.Fatalf("%q was accepted", bad)
		} else if strings.Contains(err.Error(), "0123456789") {
			t.Fatalf("the error shows the secret: %v", err)
		}
	}
	if _, err := NewRing(key1, key1); err == nil {
		t.Fatal("a ring with one id twice was accepted")
	}
}

func FuzzVerify(f *testing.F) {
	r, _ := NewRing(key1)
	f.Add(r.Sign(Claims{Waitpoint: "wp", Allow: []string{"a"}, ExpiresAt: now.Add(time.Hour)}))
	f.Add("wp1.....")
	f.Add("wp1.azE.d3A..0.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := r.Verify(tok, now)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		// Whatever verifies must be what the ring signed: signing its
		// claims again gives a token that verifies to the same claims.
		again, err := r.Verify(r.Sign(c), now)
		if err != nil || again.Waitpoint != c.Waitpoint {
			t.Fatalf("claims %+v do not round-trip: %+v %v", c, again, err)
		}
	})
}
