// Command client calls an agentca-verified service from Go, with the
// standard library alone.
//
// The agent's identity comes from the files `agentca run --out-dir DIR`
// keeps current: identity.pem (certificate chain and key in one file, so
// they always match) and bundle.pem (the CA's root). Certificates live
// minutes: before each call the client checks whether the directory's
// ..data link points at a new generation, and if so loads the new
// certificate and closes its idle connections, so that the next call
// opens a connection that presents it.
//
// The service presents an agentca certificate too, which names a SPIFFE
// ID (a URI SAN), not a host name: the client verifies its chain against
// the bundle and its SPIFFE ID against -server-id, instead of a host name.
//
//	go run examples/go/client.go -identity demo/hello \
//	    -server-id spiffe://agentca.local/tenant/acme/env/dev/agent/tickets \
//	    https://127.0.0.1:9443/whoami
//
// Exit codes: 0 when every call answered 2xx, 1 when a call failed (the
// reason on stderr), 2 for bad arguments.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// identity is the agent's certificate and the CA bundle, as last read
// from the directory `agentca run` keeps current.
type identity struct {
	dir string

	mu         sync.Mutex
	generation string // the resolved path of identity.pem
	cert       *tls.Certificate
	roots      *x509.CertPool
}

// refresh reads the files again if `agentca run` replaced them since the
// last read; it reports whether they changed.
func (id *identity) refresh() (bool, error) {
	// identity.pem -> ..data/identity.pem, and ..data is switched with one
	// rename per renewal: the resolved path names the generation, and both
	// files are read from it.
	generation, err := filepath.EvalSymlinks(filepath.Join(id.dir, "identity.pem"))
	if err != nil {
		return false, err
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if generation == id.generation {
		return false, nil
	}
	pemBytes, err := os.ReadFile(generation)
	if err != nil {
		return false, err
	}
	cert, err := loadIdentity(pemBytes)
	if err != nil {
		return false, fmt.Errorf("%s: %w", generation, err)
	}
	bundle, err := os.ReadFile(filepath.Join(filepath.Dir(generation), "bundle.pem"))
	if err != nil {
		return false, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return false, errors.New("bundle.pem holds no certificate")
	}
	id.generation, id.cert, id.roots = generation, cert, roots
	return true, nil
}

// loadIdentity takes the certificate chain and the private key from the
// one PEM file identity.pem.
//
// It does not parse the agent's own certificate, as tls.X509KeyPair would:
// Go's crypto/x509 refuses any certificate with an extension OID arc
// beyond 2^31, and agentca's scopes extension sits under the UUID arc
// 2.25 (ITU-T X.667), whose arcs are 128 bits. The TLS client only sends
// the certificates and signs with the key, which needs no parsing.
func loadIdentity(pemBytes []byte) (*tls.Certificate, error) {
	cert := &tls.Certificate{}
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			cert.Certificate = append(cert.Certificate, block.Bytes)
		case "PRIVATE KEY":
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("the private key: %w", err)
			}
			cert.PrivateKey = key
		}
	}
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, errors.New("identity.pem must hold the certificate chain and a PKCS#8 private key")
	}
	return cert, nil
}

func (id *identity) current() (*tls.Certificate, *x509.CertPool) {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert, id.roots
}

// verifyService checks the service's chain against the bundle, for the
// serverAuth usage, and that its one URI SAN is the expected SPIFFE ID.
func (id *identity) verifyService(serverID string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the service presented no certificate")
		}
		_, roots := id.current()
		intermediates := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			intermediates.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: intermediates,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}); err != nil {
			return fmt.Errorf("the service's certificate: %w", err)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != serverID {
			return fmt.Errorf("the service is %v, not %s", leaf.URIs, serverID)
		}
		return nil
	}
}

func main() {
	dir := flag.String("identity", "", "the directory `agentca run --out-dir` keeps current")
	serverID := flag.String("server-id", "", "the SPIFFE ID the service must present")
	count := flag.Int("count", 1, "calls to make (0: until stopped)")
	interval := flag.Duration("interval", time.Second, "time between calls")
	timeout := flag.Duration("timeout", 10*time.Second, "time to wait for each call")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: client -identity DIR -server-id spiffe://... [flags] URL\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *dir == "" || !strings.HasPrefix(*serverID, "spiffe://") || flag.NArg() != 1 || *count < 0 || *interval < 0 || *timeout <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	url := flag.Arg(0)

	id := &identity{dir: *dir}
	if _, err := id.refresh(); err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		os.Exit(1)
	}
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The certificate on every handshake is the newest read.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				cert, _ := id.current()
				return cert, nil
			},
			// No host name to check: VerifyConnection verifies the chain
			// and the SPIFFE ID instead (it runs whatever this says).
			InsecureSkipVerify: true,
			VerifyConnection:   id.verifyService(*serverID),
		},
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}

	for call := 1; *count == 0 || call <= *count; call++ {
		if call > 1 {
			time.Sleep(*interval)
		}
		changed, err := id.refresh()
		if err != nil {
			fmt.Fprintf(os.Stderr, "client: reading the identity: %v\n", err)
			os.Exit(1)
		}
		if changed {
			// Kept-alive connections still present the old certificate.
			transport.CloseIdleConnections()
		}
		resp, err := client.Get(url)
		if err != nil {
			fmt.Fprintf(os.Stderr, "client: call %d failed: %v\n", call, err)
			os.Exit(1)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "client: call %d: reading the answer: %v\n", call, err)
			os.Exit(1)
		}
		fmt.Println(strings.TrimRight(string(body), "\n"))
		if resp.StatusCode/100 != 2 {
			fmt.Fprintf(os.Stderr, "client: call %d: the service answered %s\n", call, resp.Status)
			os.Exit(1)
		}
	}
}
