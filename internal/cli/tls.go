package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
)

// TLS: `weft serve --tls-cert --tls-key` serves HTTPS, and the commands
// that talk to a server trust a private CA given with --ca.

// resolveTLS applies WEFT_TLS_CERT and WEFT_TLS_KEY to serve's TLS flags
// not given, and checks that both or neither are set. env is serve's
// lookup of a flag's environment variable.
func (o *serveOptions) resolveTLS(env func(flag, name string) (string, bool)) error {
	if v, ok := env("tls-cert", "WEFT_TLS_CERT"); ok {
		o.tlsCert = v
	}
	if v, ok := env("tls-key", "WEFT_TLS_KEY"); ok {
		o.tlsKey = v
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together: give both (or WEFT_TLS_CERT and WEFT_TLS_KEY) to serve HTTPS, or neither")
	}
	return nil
}

// serverTLS is the TLS configuration of serve, or nil when it serves plain
// HTTP: the certificate chain and key read from the options' PEM files,
// TLS 1.2 and later, and Go's default cipher suites (forward secrecy and
// AEAD only). The files are read once, at start; a renewed certificate
// takes effect at the next start.
func (o *serveOptions) serverTLS() (*tls.Config, error) {
	if o.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", o.tlsCert, o.tlsKey, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// warnClearToken logs that the API token travels unencrypted when a token
// guards a server reached without TLS on an address other machines use:
// anyone on the path can read it.
func warnClearToken(log *slog.Logger, token string, secure bool, host, addr string) {
	if token == "" || secure || isLoopback(host) {
		return
	}
	log.Warn("weft: the API token travels in clear text to and from "+addr+
		": serve HTTPS (--tls-cert and --tls-key, or a TLS-terminating proxy) and use an https:// server URL", "addr", addr)
}

// httpClient is the HTTP client the commands reach the server with: nil
// (the default) unless --ca names a CA to trust, in place of the system's
// roots, for an https:// server.
func (g *globals) httpClient() (*http.Client, error) {
	if g.CA == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(g.CA)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", g.CA)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// warnClearClientToken is warnClearToken for the server URL a command
// sends the token to.
func (g *globals) warnClearClientToken() {
	u, err := url.Parse(g.Server)
	if err != nil {
		return
	}
	warnClearToken(g.logger(g.stderr), g.Token, u.Scheme == "https", u.Hostname(), u.Host)
}

// tlsHint explains a certificate the command could not verify.
func tlsHint(err error) string {
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &cv) {
		return ""
	}
	var host x509.HostnameError
	if errors.As(err, &host) {
		return " (the server's certificate does not name the host of --server: use a name or address it lists)"
	}
	return " (if the server's certificate comes from a private CA, pass the CA's certificate with --ca FILE or WEFT_CA)"
}

// hostOf is the host part of a listen address.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
