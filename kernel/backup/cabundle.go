package backup

import (
	"fmt"
	"os"
	"strings"

	"github.com/fazt-sh/fazt/eventlog"
)

// checkCABundle refuses an S3 replica while AWS_CA_BUNDLE is set.
// Litestream's S3 client (v0.5.18) hands the AWS SDK an *http.Client
// of its own; the SDK adds a CA bundle only to its own buildable client
// and fails every Init with "unable to add custom RootCAs HTTPClient,
// has no WithTransportOptions" otherwise, and Litestream has no option
// to pass a client or a CA. Go's TLS reads the system's trust, which
// SSL_CERT_FILE extends on Linux: that works, so the error says so.
func checkCABundle(replica string) error {
	bundle := os.Getenv("AWS_CA_BUNDLE")
	if bundle == "" || !strings.HasPrefix(replica, "s3://") {
		return nil
	}
	return fmt.Errorf("%w: replica %s: AWS_CA_BUNDLE=%s is set, but Litestream's S3 client does not support it (the AWS SDK cannot add a CA bundle to the HTTP client Litestream gives it, and every request would fail): unset AWS_CA_BUNDLE and trust the CA through the system instead: on Linux run with SSL_CERT_FILE=%s (Go then still reads the system's certificate folder, /etc/ssl/certs), or add the CA to the system's trust store",
		eventlog.ErrInvalid, Redact(replica), bundle, bundle)
}

// explainCA adds what to do to the error Litestream's S3 client returns
// for a CA bundle the AWS SDK cannot use: AWS_CA_BUNDLE (refused before)
// or ca_bundle in an AWS profile (found only when the client starts).
func explainCA(err error) error {
	if err == nil || !strings.Contains(err.Error(), "custom RootCAs") {
		return err
	}
	return fmt.Errorf("%w: %w: Litestream's S3 client does not support a CA bundle (AWS_CA_BUNDLE, or ca_bundle in an AWS profile): remove it and trust the CA through the system instead (on Linux SSL_CERT_FILE=ca.pem, or the system's trust store)", eventlog.ErrInvalid, err)
}
