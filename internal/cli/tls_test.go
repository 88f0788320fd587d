package cli

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftworks/weft/internal/api"
)

// pki is a CA and a server certificate it signed, for 127.0.0.1 and
// localhost, as PEM files.
type pki struct {
	ca, cert, key string
	pool          *x509.CertPool
}

// newPKI generates a CA and a server certificate in t's directory.
func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Weft test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "weft"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := pki{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server-key.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	for file, block := range map[string]*pem.Block{
		p.ca: {Type: "CERTIFICATE", Bytes: caDER}, p.cert: {Type: "CERTIFICATE", Bytes: der}, p.key: {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// servedCLI is `weft serve` run in process.
type servedCLI struct {
	url    string
	stderr *syncBuffer
}

// startServe runs `weft serve` with args on a new SQLite file and waits
// until it serves; it stops when the test ends.
func startServe(t *testing.T, env map[string]string, args ...string) servedCLI {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := servedCLI{stderr: &syncBuffer{}}
	done := make(chan int, 1)
	db := filepath.Join(t.TempDir(), "weft.db")
	go func() {
		args := append([]string{"serve", "--database", db, "--log-format", "json", "--grace", "1s"}, args...)
		done <- run(ctx, args, strings.NewReader(""), &syncBuffer{}, pw, func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
		pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			_, _ = s.stderr.Write(append(sc.Bytes(), '\n'))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "weft: serving" {
				addr <- rec.Addr
			}
		}
		close(addr)
	}()
	select {
	case s.url = <-addr:
	case <-time.After(30 * time.Second):
	}
	if s.url == "" {
		cancel()
		t.Fatalf("weft serve did not start:\n%s", s.stderr.String())
	}
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("weft serve exited %d:\n%s", code, s.stderr.String())
		}
	})
	return s
}

func TestTLSServeAndClients(t *testing.T) {
	p := newPKI(t)
	s := startServe(t, map[string]string{"WEFT_API_TOKEN": "s3cret"}, "--tls-cert", p.cert, "--tls-key", p.key)
	if !strings.HasPrefix(s.url, "https://127.0.0.1:") {
		t.Fatalf("serving at %s, want https://", s.url)
	}
	env := map[string]string{"WEFT_API_TOKEN": "s3cret", "WEFT_SERVER": s.url}
	c := cli{t: t, env: env}
	ok(t, c.run(context.Background(), "queues", "--ca", p.ca))
	// WEFT_CA, and localhost, which the certificate names too.
	env["WEFT_CA"] = p.ca
	ok(t, c.run(context.Background(), "list", "--server", strings.Replace(s.url, "127.0.0.1", "localhost", 1)))
	delete(env, "WEFT_CA")

	other := newPKI(t)
	failsWith(t, c.run(context.Background(), "queues"), exitError, "certificate signed by unknown authority", "pass the CA's certificate with --ca FILE or WEFT_CA")
	failsWith(t, c.run(context.Background(), "queues", "--ca", other.ca), exitError, "certificate signed by unknown authority")
	failsWith(t, c.run(context.Background(), "queues", "--ca", p.cert+".missing"), exitError, "--ca")
	failsWith(t, c.run(context.Background(), "queues", "--ca", p.key), exitError, "no PEM certificate")
	failsWith(t, c.run(context.Background(), "queues", "--server", strings.Replace(s.url, "https", "http", 1)), exitError, "400")

	// Modern TLS only: 1.2 and later.
	conn, err := tls.Dial("tcp", strings.TrimPrefix(s.url, "https://"), &tls.Config{RootCAs: p.pool, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	conn, err = tls.Dial("tcp", strings.TrimPrefix(s.url, "https://"), &tls.Config{RootCAs: p.pool})
	if err != nil {
		t.Fatal(err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated TLS version %x, want 1.3", v)
	}
	conn.Close()

	// weft mcp reaches the server over HTTPS with the CA.
	cs, wait := mcpSession(t, env, "--server", s.url, "--ca", p.ca)
	out, isErr := mcpCall(t, cs, "enqueue_task", map[string]any{"kind": "email"})
	if isErr || decode[api.Enqueued](t, out).ID == "" {
		t.Errorf("enqueue_task over HTTPS: %s", out)
	}
	_ = cs.Close()
	ok(t, wait())
	if strings.Contains(s.stderr.String(), "clear text") {
		t.Errorf("a TLS server warned about the token:\n%s", s.stderr.String())
	}
}

// weft worker runs a webhook task claimed from an HTTPS server.
func TestTLSWorker(t *testing.T) {
	p := newPKI(t)
	s := startServe(t, nil, "--tls-cert", p.cert, "--tls-key", p.key, "--queue", "other")
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("pong")) }))
	t.Cleanup(hook.Close)
	c := cli{t: t, env: map[string]string{"WEFT_SERVER": s.url, "WEFT_CA": p.ca}}
	id := decode[api.Enqueued](t, ok(t, c.run(context.Background(), "enqueue", "http", "--args", `{"url":"`+hook.URL+`"}`, "--format", "json")).stdout).ID

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- c.run(ctx, "worker", "--worker-id", "tls-worker") }()
	r := ok(t, c.run(context.Background(), "task", id, "--monitor", "--format", "json"))
	stop()
	ok(t, <-done)
	if !strings.Contains(r.stdout, `"completed"`) {
		t.Errorf("task monitored over HTTPS:\n%s", r)
	}
}

func TestTLSServeFlags(t *testing.T) {
	p := newPKI(t)
	failsWith(t, runWeft(t, "serve", "--tls-cert", p.cert), exitUsage, "--tls-cert and --tls-key go together")
	c := cli{t: t, env: map[string]string{"WEFT_TLS_KEY": p.key}}
	failsWith(t, c.run(context.Background(), "serve"), exitUsage, "go together")
	failsWith(t, runWeft(t, "serve", "--database", filepath.Join(t.TempDir(), "w.db"), "--tls-cert", p.cert, "--tls-key", p.cert), exitError, "--tls-key")
	// The environment alone serves HTTPS.
	s := startServe(t, map[string]string{"WEFT_TLS_CERT": p.cert, "WEFT_TLS_KEY": p.key})
	if !strings.HasPrefix(s.url, "https://") {
		t.Errorf("serving at %s with WEFT_TLS_CERT and WEFT_TLS_KEY", s.url)
	}
}

// A token served in clear text beyond loopback is logged as a warning,
// before the server says it serves; on loopback, or with TLS, it is not.
func TestTLSTokenWarning(t *testing.T) {
	p := newPKI(t)
	token := map[string]string{"WEFT_API_TOKEN": "s3cret"}
	const warning = "the API token travels in clear text"
	for _, c := range []struct {
		name string
		args []string
		warn bool
	}{
		{"all interfaces", []string{"--addr", "0.0.0.0:0"}, true},
		{"all interfaces with TLS", []string{"--addr", "0.0.0.0:0", "--tls-cert", p.cert, "--tls-key", p.key}, false},
		{"loopback", nil, false},
	} {
		s := startServe(t, token, c.args...)
		if got := strings.Contains(s.stderr.String(), warning); got != c.warn {
			t.Errorf("%s: warned %v, want %v:\n%s", c.name, got, c.warn, s.stderr.String())
		}
	}
	// The commands warn too before they send the token in clear text
	// beyond loopback (no request is made here).
	for server, warn := range map[string]bool{
		"http://weft.example:7070":  true,
		"https://weft.example:7070": false,
		"http://127.0.0.1:7070":     false,
		"http://localhost:7070":     false,
	} {
		var stderr syncBuffer
		g := &globals{Server: server, Token: "s3cret", LogFormat: "text", LogLevel: "info", stderr: &stderr}
		g.warnClearClientToken()
		if got := strings.Contains(stderr.String(), warning); got != warn {
			t.Errorf("token sent to %s: warned %v, want %v: %s", server, got, warn, stderr.String())
		}
	}
}
