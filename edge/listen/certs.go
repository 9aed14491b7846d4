// Package listen holds what the edge's public listeners need beyond net/http:
// certificates chosen by SNI and reloaded without a restart, TLS settings for
// HTTP/1.1 + HTTP/2 over TCP and for HTTP/3 over QUIC, the Alt-Svc
// advertisement that moves browsers to HTTP/3, and the HTTP/2 flood guard
// (rapid reset, CONTINUATION floods; h2guard.go).
package listen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// CertFiles is one certificate chain and its key, as PEM files, and the
// host names it serves (besides those in the certificate itself).
type CertFiles struct {
	CertFile string
	KeyFile  string
	Hosts    []string
}

// Certs holds the certificates of every property and picks one by SNI. Reload
// swaps them atomically; a failed reload keeps the certificates in use.
type Certs struct {
	files []CertFiles
	set   atomic.Pointer[certSet]
	log   *slog.Logger
}

type certSet struct {
	byName   map[string]*tls.Certificate // exact names
	wildcard map[string]*tls.Certificate // "example.com" for "*.example.com"
	def      *tls.Certificate            // for clients that send no SNI
	mtimes   []time.Time
}

// NewCerts loads every certificate; an unreadable or invalid file is an
// error naming it.
func NewCerts(files []CertFiles, log *slog.Logger) (*Certs, error) {
	if len(files) == 0 {
		return nil, errors.New("listen: no certificates")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certs{files: files, log: log}
	s, err := load(files)
	if err != nil {
		return nil, err
	}
	c.set.Store(s)
	return c, nil
}

// LoadPair loads and checks one certificate and key, for config validation.
func LoadPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s / key %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", certFile, err)
	}
	cert.Leaf = leaf
	return &cert, nil
}

func load(files []CertFiles) (*certSet, error) {
	s := &certSet{byName: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for _, f := range files {
		cert, err := LoadPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(f.CertFile)
		if err != nil {
			return nil, err
		}
		s.mtimes = append(s.mtimes, st.ModTime())
		if s.def == nil {
			s.def = cert
		}
		names := append(append([]string{}, cert.Leaf.DNSNames...), f.Hosts...)
		for _, n := range names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := s.wildcard[rest]; !dup {
					s.wildcard[rest] = cert
				}
				continue
			}
			if _, dup := s.byName[n]; !dup {
				s.byName[n] = cert
			}
		}
	}
	return s, nil
}

// GetCertificate picks the certificate for a TLS handshake: the one serving
// the SNI name exactly, else a wildcard one, else, without SNI, the first.
// An unknown name fails the handshake: the node serves no host it does not know.
func (c *Certs) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := c.set.Load()
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return s.def, nil
	}
	if cert, ok := s.byName[name]; ok {
		return cert, nil
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if cert, ok := s.wildcard[name[i+1:]]; ok {
			return cert, nil
		}
	}
	return nil, fmt.Errorf("listen: no certificate for %q", name)
}

// Reload reads every certificate again and swaps them in if all load.
func (c *Certs) Reload() error {
	s, err := load(c.files)
	if err != nil {
		c.log.Error("certificate reload failed; keeping the certificates in use", "err", err)
		return err
	}
	c.set.Store(s)
	c.log.Info("certificates reloaded", "count", len(c.files))
	return nil
}

// changed reports whether any certificate file's mtime moved.
func (c *Certs) changed() bool {
	s := c.set.Load()
	for i, f := range c.files {
		st, err := os.Stat(f.CertFile)
		if err == nil && i < len(s.mtimes) && !st.ModTime().Equal(s.mtimes[i]) {
			return true
		}
	}
	return false
}

// Watch reloads the certificates when a certificate file changes, checking
// every interval until ctx ends. reload receives SIGHUP-style requests too.
func (c *Certs) Watch(ctx context.Context, interval time.Duration, reload <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			c.Reload()
		case <-t.C:
			if c.changed() {
				c.Reload()
			}
		}
	}
}

// TLSConfig is the server configuration for HTTP/1.1 and HTTP/2 over TCP:
// TLS 1.2 or later, forward-secret AEAD suites only.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
		CipherSuites: []uint16{ // TLS 1.2; TLS 1.3 suites are all strong
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// QUICTLSConfig is the server configuration for HTTP/3 (TLS 1.3, h3).
func (c *Certs) QUICTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: c.GetCertificate,
		NextProtos:     []string{"h3"},
	}
}
