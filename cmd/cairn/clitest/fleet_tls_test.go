package clitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cairn test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(priv)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

func TestFleetTLS(t *testing.T) {
	f := newFleet(t)
	cert, key := selfSigned(t, f.base)
	addr := strings.TrimPrefix(f.coordURL, "http://")
	f.coordURL = "https://" + addr
	f.coord = f.start("coordinator", nil, "coordinator", "--listen", addr, "--admin-token", f.admin, "--state-dir", f.coordDir,
		"--enroll-token", "enroll-secret", "--tls-cert", cert, "--tls-key", key, "--agent-tls", "--agent-ca", cert)
	admin := func(extra ...string) (string, error) {
		args := append([]string{"--coordinator", f.coordURL, "--token", f.admin}, extra...)
		cmd := exec.Command(cairnBin, args...)
		cmd.Env = f.env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	f.waitFor("the coordinator over TLS", 20*time.Second, func() bool {
		_, err := admin("--ca-file", cert, "node", "list")
		return err == nil
	})
	if out, err := admin("node", "list"); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("without --ca-file the self-signed coordinator was trusted: %v %s", err, out)
	}
	// An agent serving TLS, registering over TLS, backed up over TLS.
	a := &agentProc{node: "secure", addr: freePort(t), src: filepath.Join(f.base, "src-secure"), state: filepath.Join(f.base, "state-secure")}
	os.MkdirAll(a.src, 0o755)
	writeFile(t, filepath.Join(a.src, "secret.txt"), "over tls")
	f.agents["secure"] = a
	a.proc = f.start("agent secure", nil, "agent", "--node", "secure", "--listen", a.addr, "--advertise", a.addr,
		"--coordinator", f.coordURL, "--ca-file", cert, "--tls-cert", cert, "--tls-key", key, "--state-dir", a.state,
		"--enroll-token", "enroll-secret", "--register", a.src, "--every", "1s")
	f.waitFor("a backup over TLS", 30*time.Second, func() bool {
		out, err := admin("--ca-file", cert, "history", "secure")
		return err == nil && !strings.Contains(out, "\n0 snapshots")
	})
	out, err := admin("--ca-file", cert, "node", "list")
	if err != nil || !strings.Contains(out, "secure") || strings.Contains(out, "down") {
		t.Errorf("node list over TLS: %v\n%s", err, out)
	}
}
