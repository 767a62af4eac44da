package redact

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const secret = "s3cr3t"

func TestURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://sum.golang.org", "https://sum.golang.org"},
		{"https://proxy.example/sumdb/sum.golang.org", "https://proxy.example/sumdb/sum.golang.org"},
		{"https://user:s3cr3t@proxy.example/sumdb/x", "https://user:xxxxx@proxy.example/sumdb/x"},
		{"https://s3cr3t@proxy.example", "https://xxxxx@proxy.example"},
		{"https://user:@proxy.example", "https://user:xxxxx@proxy.example"},
		{"http://127.0.0.1:8080/x?token=s3cr3t&a=b", "http://127.0.0.1:8080/x?token=xxxxx&a=b"},
		// Does not parse: a space, a bad escape, a '/' in the password.
		{"https://user:s3 cr3t@host/x", "https://xxxxx@host/x"},
		{"https://user:s3%zzcr3t@host/x", "https://xxxxx@host/x"},
		{"https://user:pa/s3cr3t@host:x/y", "https://xxxxx@host:x/y"},
		{"not a url at all", "not a url at all"},
	} {
		got := URL(tt.in)
		if got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, secret) {
			t.Errorf("URL(%q) = %q keeps the secret", tt.in, got)
		}
	}
}

func TestDSN(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/db?sslmode=disable", "postgres://postgres@127.0.0.1:5432/db?sslmode=disable"},
		{"postgres://postgres:s3cr3t@127.0.0.1:5432/db", "postgres://postgres:xxxxx@127.0.0.1:5432/db"},
		{"postgresql://u:s3cr3t@h/db?password=s3cr3t&sslpassword=s3cr3t&sslmode=require", "postgresql://u:xxxxx@h/db?password=xxxxx&sslpassword=xxxxx&sslmode=require"},
		{"postgres://postgres:pg@s3cr3t@127.0.0.1:bad/db", "postgres://xxxxx@127.0.0.1:bad/db"},
		{"host=h password=s3cr3t dbname=db", "host=h password=xxxxx dbname=db"},
		{"host=h password = 's3 cr\\'3t' dbname=db", "host=h password = xxxxx dbname=db"},
		{"host=h PASSWORD=s3cr3t", "host=h PASSWORD=xxxxx"},
		{"./sumkeep-data/sumkeep.db", "./sumkeep-data/sumkeep.db"},
	} {
		got := DSN(tt.in)
		if got != tt.want {
			t.Errorf("DSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, secret) {
			t.Errorf("DSN(%q) = %q keeps the secret", tt.in, got)
		}
	}
}

// TestURLError: the errors of net/http's client name the whole URL; it
// hides a password, but not a token given as the user name, and
// http.NewRequest's parse errors hide nothing. URLError masks them all, and
// wrapping keeps working.
func TestURLError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://s3cr3t@127.0.0.1:1/latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = http.DefaultClient.Do(req)
	if err == nil {
		t.Fatal("no error from a closed port")
	}
	if !strings.Contains(err.Error(), secret) {
		t.Fatalf("the client's error no longer names the URL (%v): this test shows nothing", err)
	}
	wrapped := fmt.Errorf("fetching: %w", URLError(err))
	if strings.Contains(wrapped.Error(), secret) {
		t.Errorf("after URLError: %v", wrapped)
	}
	if !strings.Contains(wrapped.Error(), "127.0.0.1:1") {
		t.Errorf("after URLError the host is gone: %v", wrapped)
	}
	_, err = http.NewRequest("GET", "http://user:s3 cr3t@host/", nil)
	if err == nil || !strings.Contains(URLError(err).Error(), "xxxxx@host") || strings.Contains(err.Error(), "cr3t") {
		t.Errorf("a URL that does not parse: %v", err)
	}
	if URLError(nil) != nil {
		t.Error("URLError(nil) is not nil")
	}
	plain := errors.New("plain")
	if URLError(plain) != plain {
		t.Error("URLError changed an error without a URL")
	}
}
