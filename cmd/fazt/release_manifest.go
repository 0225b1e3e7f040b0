package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"aead.dev/minisign"
	"github.com/spf13/cobra"

	"github.com/fazt-sh/fazt/kernel/provision"
)

func (a *app) releaseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Make release keys and signed release manifests (for the release workflow)",
	}
	cmd.AddCommand(a.releaseKeygenCmd(), a.releaseManifestCmd())
	return cmd
}

func (a *app) releaseKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Make a minisign key pair for signing releases: PREFIX.key (secret) and PREFIX.pub",
		Long: `Keygen writes a minisign key pair: PREFIX.key, the secret key (mode 0600;
encrypted with FAZT_RELEASE_KEY_PASSWORD when that is set, as the minisign
tool does), and PREFIX.pub, the public key. Keep the secret key in the CI's
secrets (FAZT_RELEASE_KEY) and build the binaries with the public key:
-ldflags "-X main.releaseKey=<the key's second line>". The minisign tool
reads and writes the same files.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			pub, priv, err := minisign.GenerateKey(nil)
			if err != nil {
				return err
			}
			var secret []byte
			if pw := a.getenv("FAZT_RELEASE_KEY_PASSWORD"); pw != "" {
				secret, err = minisign.EncryptKey(pw, priv)
			} else {
				secret, err = priv.MarshalText()
			}
			if err != nil {
				return err
			}
			pubText, _ := pub.MarshalText()
			if err := writeNew(out+".key", append(secret, '\n'), 0o600); err != nil {
				return err
			}
			if err := writeNew(out+".pub", append(pubText, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "secret key: %s.key (keep it secret)\npublic key: %s.pub\nkey id: %s\nbuild with: -ldflags \"-X main.releaseKey=%s\"\n", out, out, provision.KeyID(pub), pub.String())
			return nil
		}),
	}
	cmd.Flags().StringVar(&out, "out", "fazt-release", "file name prefix of the key pair")
	return cmd
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("%w (a key is never overwritten: remove it first or choose another --out)", err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (a *app) releaseManifestCmd() *cobra.Command {
	var version, keyFile, out string
	cmd := &cobra.Command{
		Use:   "manifest PLATFORM=BINARY...",
		Short: "Write and sign a release manifest for the given binaries",
		Long: `Manifest hashes each binary (given as GOOS/GOARCH=PATH), writes
DIR/manifest.json with the version and, per platform, the binary's file
name, size and SHA-256, and signs it with the release's minisign secret
key into DIR/manifest.json.minisig. The binaries belong in DIR beside it
under the same names. The secret key comes from --key-file or the
environment variable FAZT_RELEASE_KEY (its text); an encrypted key is
opened with FAZT_RELEASE_KEY_PASSWORD. Check the result with
minisign -Vm DIR/manifest.json -P <public key>.`,
		Example: `  fazt release manifest --version v1.2.0 --out dist \
    linux/amd64=dist/fazt-v1.2.0-linux-amd64 linux/arm64=dist/fazt-v1.2.0-linux-arm64`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.action(func(cmd *cobra.Command, args []string) error {
			key, err := a.releaseSecretKey(keyFile)
			if err != nil {
				return err
			}
			m := provision.Manifest{Product: provision.Product, Version: version, Date: time.Now().UTC().Truncate(time.Second), Platforms: map[string]provision.Binary{}}
			for _, arg := range args {
				platform, path, ok := strings.Cut(arg, "=")
				if !ok || strings.Count(platform, "/") != 1 {
					return usagef(cmd, "%q: want GOOS/GOARCH=PATH", arg)
				}
				b, err := provision.Describe(path)
				if err != nil {
					return err
				}
				if _, err := os.Stat(filepath.Join(out, b.File)); err != nil {
					return fmt.Errorf("%s is not in %s: release binaries sit beside the manifest", b.File, out)
				}
				m.Platforms[platform] = b
			}
			manifest, sig, err := provision.Sign(m, key)
			if err != nil {
				return err
			}
			mp := filepath.Join(out, provision.ManifestName)
			if err := os.WriteFile(mp, manifest, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(mp+provision.SignatureSuffix, sig, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote %s and %s (%s, %d platforms)\n", mp, mp+provision.SignatureSuffix, version, len(m.Platforms))
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&version, "version", "", "the release's version, like v1.2.0 (required)")
	f.StringVar(&keyFile, "key-file", "", "the minisign secret key (default: the text of FAZT_RELEASE_KEY)")
	f.StringVar(&out, "out", ".", "directory of the binaries, where the manifest is written")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}

func (a *app) releaseSecretKey(file string) (minisign.PrivateKey, error) {
	var text []byte
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return minisign.PrivateKey{}, err
		}
		text = b
	} else if s := a.getenv("FAZT_RELEASE_KEY"); s != "" {
		text = []byte(s)
	} else {
		return minisign.PrivateKey{}, errors.New("no secret key: pass --key-file or set FAZT_RELEASE_KEY (make one with fazt release keygen)")
	}
	text = []byte(strings.TrimSpace(string(text)))
	if minisign.IsEncrypted(text) {
		pw := a.getenv("FAZT_RELEASE_KEY_PASSWORD")
		if pw == "" {
			return minisign.PrivateKey{}, errors.New("the secret key is encrypted: set FAZT_RELEASE_KEY_PASSWORD")
		}
		return minisign.DecryptKey(pw, text)
	}
	var k minisign.PrivateKey
	if err := k.UnmarshalText(text); err != nil {
		return minisign.PrivateKey{}, fmt.Errorf("the secret key: %w", err)
	}
	return k, nil
}
