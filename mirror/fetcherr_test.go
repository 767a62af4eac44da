package mirror

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
)

// TestClassifyStoreFailure: a commit that failed because the database's
// connection broke is a net.Error, as an unreachable upstream's is; it is
// told apart as the store's failure, not the upstream's.
func TestClassifyStoreFailure(t *testing.T) {
	broken := &net.OpError{Op: "read", Net: "unix", Err: syscall.ECONNRESET}
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{&StoreError{Err: broken}, FetchNotStored},
		{broken, FetchUnreachable},
	} {
		fe, ok := errors.AsType[*FetchError](classifyFetch("example.com/m", "v1.0.0", tc.err))
		if !ok || fe.Kind != tc.kind {
			t.Errorf("classifyFetch(%v) = %+v, want kind %s", tc.err, fe, tc.kind)
		}
		if _, ok := errors.AsType[*StoreError](fe); ok != (tc.kind == FetchNotStored) {
			t.Errorf("classifyFetch(%v) lost or made up the StoreError", tc.err)
		}
	}
}

// TestClassifyUntrustedCertificate: an upstream whose TLS certificate is
// not trusted (a url.Error, so a net.Error too) is told apart from one that
// cannot be reached.
func TestClassifyUntrustedCertificate(t *testing.T) {
	err := fmt.Errorf("fetching https://sum.example/latest: %w", &url.Error{Op: "Get", URL: "https://sum.example/latest",
		Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}})
	fe, ok := errors.AsType[*FetchError](classifyFetch("example.com/m", "v1.0.0", err))
	if !ok || fe.Kind != FetchUnreachable || !strings.Contains(fe.Reason, "TLS certificate is not trusted") {
		t.Errorf("classifyFetch(%v) = %+v, want unreachable for want of a trusted certificate", err, fe)
	}
}
