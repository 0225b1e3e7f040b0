package eventlog

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// ClusterTLS is a node's TLS for its routes: its certificate and key,
// and the cluster's CA, which every node verifies the others against.
// Each node's certificate serves both sides of a route (server and
// client authentication) and names the hosts the other nodes reach it
// by (their Peers entries). ClusterCA makes such a set.
type ClusterTLS struct {
	CertFile string // PEM certificate of this node, issued by the CA
	KeyFile  string // PEM private key of CertFile
	CAFile   string // PEM certificate(s) of the cluster's CA

	expires time.Time // the certificate's NotAfter, once checked
}

// certWarnBefore is how long before its certificate expires a node
// warns at every start.
const certWarnBefore = 30 * 24 * time.Hour

// warn logs what an operator should fix before it bites: routes in
// clear, a certificate close to its end (routes refuse it after).
func (c *Cluster) warn(logger *slog.Logger) {
	if c.Insecure {
		logger.Warn("cluster routes run in clear: every event crosses the network unencrypted; give the nodes TLS certificates (fazt cluster certs) unless the network is private or encrypted",
			"cluster", c.Name, "node", c.Node, "listen", c.Listen)
	}
	if t := c.TLS; t != nil && !t.expires.IsZero() && time.Until(t.expires) < certWarnBefore {
		logger.Warn("cluster TLS certificate expires soon, and the other nodes refuse it after: issue a new one from the cluster's CA (move the old pair away, then fazt cluster certs --keep-existing) and restart the node",
			"cert", t.CertFile, "expires", t.expires.UTC().Format(time.DateOnly))
	}
}

// routeTLSTimeout bounds a route's TLS handshake.
const routeTLSTimeout = 2 * time.Second

// Check reads the three files and verifies what NATS would otherwise
// find only when a route connects, or report in its log: the key is the
// certificate's, the CA issued the certificate, it is valid now and for
// both server and client authentication. Errors wrap ErrInvalid and say
// which file is wrong.
func (t *ClusterTLS) Check() error {
	switch {
	case t.CertFile == "":
		return invalidf("cluster TLS: no certificate file (the node's certificate, issued by the cluster's CA)")
	case t.KeyFile == "":
		return invalidf("cluster TLS: no key file (the private key made with the certificate %s)", t.CertFile)
	case t.CAFile == "":
		return invalidf("cluster TLS: no CA file (the CA the nodes verify each other against)")
	}
	caPEM, err := os.ReadFile(t.CAFile)
	if err != nil {
		return invalidf("cluster TLS CA file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return invalidf("cluster TLS CA file %s holds no PEM certificate", t.CAFile)
	}
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			return invalidf("cluster TLS: %v", err)
		}
		return invalidf("cluster TLS certificate %s with key %s: %v (the key must be the one made with this certificate)", t.CertFile, t.KeyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return invalidf("cluster TLS certificate %s: %v", t.CertFile, err)
		}
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{use}})
		var inv x509.CertificateInvalidError
		switch {
		case err == nil:
		case errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage:
			return invalidf("cluster TLS certificate %s is not for both server and client authentication: each node presents it on both sides of a route (fazt cluster certs makes such certificates)", t.CertFile)
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			return invalidf("cluster TLS certificate %s is not valid now (from %s until %s): issue a new one from the cluster's CA", t.CertFile, leaf.NotBefore.Format(time.DateOnly), leaf.NotAfter.Format(time.DateOnly))
		default:
			return invalidf("cluster TLS certificate %s was not issued by the CA in %s (%v): every node's certificate must come from the cluster's one CA", t.CertFile, t.CAFile, err)
		}
	}
	t.expires = leaf.NotAfter
	return nil
}

// routeProbeTimeout bounds probeRoutes.
const routeProbeTimeout = 3 * time.Second

// probeRoutes connects to each peer's route port as a route would (TLS
// with this node's certificate, the peer's host as server name) and
// returns what failed, peer by peer: the embedded server keeps such
// errors in a log it does not write, and a certificate that does not
// name the host in --peers, or comes from another CA, would otherwise
// leave a node waiting without saying why. Nothing without TLS.
func (c *Cluster) probeRoutes(ctx context.Context) []string {
	if c.TLS == nil {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
	if err != nil {
		return []string{err.Error()}
	}
	caPEM, err := os.ReadFile(c.TLS.CAFile)
	if err != nil {
		return []string{err.Error()}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	ctx, cancel := context.WithTimeout(ctx, routeProbeTimeout)
	defer cancel()
	bad := make([]string, len(c.Peers))
	var wg sync.WaitGroup
	for i, p := range c.Peers {
		host, _, _ := net.SplitHostPort(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := tls.Dialer{Config: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: host}}
			conn, err := d.DialContext(ctx, "tcp", p)
			if err == nil {
				// The peer sends its INFO once it has taken this node's
				// certificate (TLS 1.3 says no only after the handshake).
				if dl, ok := ctx.Deadline(); ok {
					conn.SetReadDeadline(dl)
				}
				_, err = bufio.NewReader(conn).ReadString('\n')
				conn.Close()
			}
			if err != nil {
				bad[i] = fmt.Sprintf("route to %s: %v", p, err)
			}
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(bad, func(s string) bool { return s == "" })
}

// ClusterCA is a private certificate authority for one cluster's routes:
// it issues each node's certificate, and its certificate is the CAFile
// of every node. Keep its key off the nodes where you can: whoever holds
// it can make a node the others accept.
type ClusterCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertPEM and KeyPEM are the CA's certificate and private key.
	CertPEM, KeyPEM []byte
}

// How long certificates made here are valid. A node certificate never
// outlives its CA.
const (
	ClusterCAValidity   = 10 * 365 * 24 * time.Hour
	ClusterCertValidity = 5 * 365 * 24 * time.Hour
	clockSkew           = time.Hour // valid from a little before now
)

// NewClusterCA makes a new CA (an ECDSA P-256 key) named after the cluster.
func NewClusterCA(cluster string) (*ClusterCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	sn := serial()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		// Named with a part of its serial: TLS errors name the CA, and two
		// CAs of one cluster name are then told apart.
		Subject:               pkix.Name{CommonName: fmt.Sprintf("fazt cluster CA %s %06x", cluster, new(big.Int).Rsh(sn, 104)), Organization: []string{"fazt"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(ClusterCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it signs node certificates only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	return &ClusterCA{cert: cert, key: key, CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: keyPEM}, nil
}

// ParseClusterCA reads a CA that NewClusterCA made (its CertPEM and
// KeyPEM), to issue more node certificates.
func ParseClusterCA(certPEM, keyPEM []byte) (*ClusterCA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, invalidf("cluster CA: %v", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, invalidf("cluster CA: %v", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, invalidf("cluster CA: not a CA made by fazt cluster certs")
	}
	return &ClusterCA{cert: cert, key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// Issue makes node's certificate and key. The certificate names the
// node and hosts (DNS names or IP addresses the other nodes reach it
// by), and localhost, 127.0.0.1 and ::1, and serves both server and
// client authentication.
func (ca *ClusterCA) Issue(node string, hosts []string) (certPEM, keyPEM []byte, err error) {
	return ca.issue(node, hosts, ClusterCertValidity)
}

func (ca *ClusterCA) issue(node string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if !validClusterName(node) {
		return nil, nil, invalidf("node name %q: want letters, digits, '-' and '_' (the node's --node)", node)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: node, Organization: []string{"fazt"}},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{node, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		if !validHost(h) {
			return nil, nil, invalidf("host %q: want a DNS name or an IP address, without a port", h)
		}
		if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = marshalKey(key); err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, nil
}

func validHost(h string) bool {
	if h == "" || len(h) > 253 || h[0] == '.' || h[len(h)-1] == '.' {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported systems
	}
	return n
}

func marshalKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
