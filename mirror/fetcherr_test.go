package mirror

import (
	"errors"
	"net"
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
