package provision

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"aead.dev/minisign"

	"github.com/fazt-sh/fazt/eventlog"
)

func keyPair(t *testing.T) (minisign.PublicKey, minisign.PrivateKey) {
	t.Helper()
	pub, priv, err := minisign.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func sampleManifest() Manifest {
	return Manifest{Product: Product, Version: "v1.2.0", Platforms: map[string]Binary{
		"linux/amd64": {File: "fazt-v1.2.0-linux-amd64", Size: 10, SHA256: strings.Repeat("ab", 32)},
	}}
}

// Verify accepts only a well-formed manifest signed by a release key,
// byte for byte; every refusal is ErrRefused (and so ErrInvalid) and
// says what is wrong.
func TestVerify(t *testing.T) {
	pub, priv := keyPair(t)
	otherPub, otherPriv := keyPair(t)
	good, sig, err := Sign(sampleManifest(), priv)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := Verify(good, sig, []minisign.PublicKey{otherPub, pub}); err != nil || m.Version != "v1.2.0" {
		t.Fatalf("a good manifest with the key among others: %v %+v", err, m)
	}
	signed := func(m Manifest) ([]byte, []byte) {
		// Signed as is, without Sign's checks, to reach Verify's.
		b := []byte(`{"product":"` + m.Product + `","version":"` + m.Version + `","platforms":{"linux/amd64":{"file":"` + m.Platforms["linux/amd64"].File + `","size":10,"sha256":"` + strings.Repeat("ab", 32) + `"}}}`)
		return b, minisign.Sign(priv, b)
	}
	otherProduct, otherProductSig := signed(Manifest{Product: "other", Version: "v1.2.0", Platforms: sampleManifest().Platforms})
	badVersion, badVersionSig := signed(Manifest{Product: Product, Version: "1.2", Platforms: sampleManifest().Platforms})
	pathFile, pathFileSig := signed(Manifest{Product: Product, Version: "v1.2.0", Platforms: map[string]Binary{"linux/amd64": {File: "../../etc/passwd"}}})
	notJSON := []byte("not json")
	for _, tc := range []struct {
		name          string
		manifest, sig []byte
		keys          []minisign.PublicKey
		want          string
	}{
		{"no key", good, sig, nil, "no release key"},
		{"unsigned", good, nil, []minisign.PublicKey{pub}, "not signed"},
		{"garbage signature", good, []byte("untrusted comment: x\nnot base64!\n"), []minisign.PublicKey{pub}, "not a minisign signature"},
		{"another key", good, minisign.Sign(otherPriv, good), []minisign.PublicKey{pub}, "not by a release key"},
		{"changed after signing", bytes.Replace(good, []byte("v1.2.0"), []byte("v9.2.0"), 1), sig, []minisign.PublicKey{pub}, "does not match its content"},
		{"trusted comment changed", good, bytes.Replace(sig, []byte("trusted comment: fazt"), []byte("trusted comment: evil"), 1), []minisign.PublicKey{pub}, "does not match its content"},
		{"not JSON", notJSON, minisign.Sign(priv, notJSON), []minisign.PublicKey{pub}, "not valid JSON"},
		{"another product", otherProduct, otherProductSig, []minisign.PublicKey{pub}, `is for "other"`},
		{"not a semantic version", badVersion, badVersionSig, []minisign.PublicKey{pub}, "not a semantic version"},
		{"a path as file name", pathFile, pathFileSig, []minisign.PublicKey{pub}, "want a plain file name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.manifest, tc.sig, tc.keys)
			if !errors.Is(err, ErrRefused) || !errors.Is(err, eventlog.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrRefused saying %q", err, tc.want)
			}
		})
	}
}

func TestNewer(t *testing.T) {
	for _, tc := range []struct {
		release, running, want string
	}{
		{"v1.2.0", "v1.1.9", ""},
		{"v1.10.0", "v1.9.0", ""}, // numeric, not lexical
		{"v1.2.0", "v1.2.0-rc.1", ""},
		{"v1.2.0", "v1.2.0", "already running"},
		{"v1.1.0", "v1.2.0", "older than the running v1.2.0"},
		{"v1.2.0", "(devel)", "not a release version"},
	} {
		err := Newer(tc.release, tc.running)
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Newer(%s, %s) = %v, want %q", tc.release, tc.running, err, tc.want)
		}
	}
}

func TestFor(t *testing.T) {
	m := sampleManifest()
	if _, err := m.For("linux/amd64"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.For("linux/arm64"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no binary for linux/arm64 (it has linux/amd64)") {
		t.Fatalf("other platform: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	a, _ := keyPair(t)
	b, _ := keyPair(t)
	dir := t.TempDir()
	text, _ := b.MarshalText()
	file := filepath.Join(dir, "b.pub")
	if err := os.WriteFile(file, text, 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := ParseKeys(a.String() + ", " + file)
	if err != nil || len(keys) != 2 || !keys[0].Equal(a) || !keys[1].Equal(b) {
		t.Fatalf("ParseKeys: %v %v", keys, err)
	}
	if _, err := ParseKeys("RWQnotakey"); !errors.Is(err, eventlog.ErrInvalid) {
		t.Fatalf("a bad key: %v", err)
	}
	if keys, err := ParseKeys(""); err != nil || len(keys) != 0 {
		t.Fatalf("no key: %v %v", keys, err)
	}
}

// Fetch reads the manifest and the signature beside it; a missing
// signature is a refusal, a missing manifest is ErrNotFound.
func TestFetchFromFile(t *testing.T) {
	pub, priv := keyPair(t)
	dir := t.TempDir()
	m, sig, err := Sign(sampleManifest(), priv)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ManifestName)
	if _, err := (Source{Location: path}).Fetch(context.Background(), []minisign.PublicKey{pub}); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("no manifest: %v", err)
	}
	os.WriteFile(path, m, 0o644)
	if _, err := (Source{Location: path}).Fetch(context.Background(), []minisign.PublicKey{pub}); !errors.Is(err, ErrRefused) {
		t.Fatalf("no signature: %v", err)
	}
	os.WriteFile(path+SignatureSuffix, sig, 0o644)
	if r, err := (Source{Location: path}).Fetch(context.Background(), []minisign.PublicKey{pub}); err != nil || r.Manifest.Version != "v1.2.0" {
		t.Fatalf("good: %v", err)
	}
	big := bytes.Repeat([]byte(" "), MaxManifestBytes+1)
	os.WriteFile(path, big, 0o644)
	if _, err := (Source{Location: path}).Fetch(context.Background(), []minisign.PublicKey{pub}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("too large: %v", err)
	}
}

func TestUnitFromCgroup(t *testing.T) {
	for in, want := range map[string]string{
		"0::/system.slice/fazt.service\n":                                     "fazt.service",
		"12:pids:/system.slice/fazt.service\n0::/system.slice/fazt.service\n": "fazt.service",
		"0::/user.slice/user-1000.slice/session-3.scope\n":                    "",
		"0::/system.slice/fazt.service/helper\n":                              "fazt.service",
		"":                                                                    "",
	} {
		if got := unitFromCgroup([]byte(in)); got != want {
			t.Errorf("unitFromCgroup(%q) = %q, want %q", in, got, want)
		}
	}
}

// Over HTTP the signature is the manifest's URL plus .minisig and the
// binary is resolved beside the manifest; a missing signature is a
// refusal, not an error of the network.
func TestFetchOverHTTP(t *testing.T) {
	pub, priv := keyPair(t)
	bin := []byte("#!/bin/sh\necho new\n")
	m := Manifest{Product: Product, Version: "v1.3.0", Platforms: map[string]Binary{"linux/amd64": {File: "fazt-linux-amd64", Size: int64(len(bin)), SHA256: sum(bin)}}}
	manifest, sig, err := Sign(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"/releases/v1.3.0/manifest.json": manifest, "/releases/v1.3.0/manifest.json.minisig": sig, "/releases/v1.3.0/fazt-linux-amd64": bin}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	src := Source{Location: srv.URL + "/releases/v1.3.0/manifest.json?x=1"}
	rel, err := src.Fetch(context.Background(), []minisign.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "fazt")
	os.WriteFile(target, []byte("old"), 0o755)
	staged, err := rel.Stage(context.Background(), rel.Manifest.Platforms["linux/amd64"], target)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(staged); !bytes.Equal(b, bin) {
		t.Fatalf("staged %q", b)
	}
	delete(files, "/releases/v1.3.0/manifest.json.minisig")
	if _, err := (Source{Location: srv.URL + "/releases/v1.3.0/manifest.json"}).Fetch(context.Background(), []minisign.PublicKey{pub}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned over HTTP: %v", err)
	}
	if _, err := (Source{Location: srv.URL + "/nothing/manifest.json"}).Fetch(context.Background(), []minisign.PublicKey{pub}); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("no manifest over HTTP: %v", err)
	}
}
