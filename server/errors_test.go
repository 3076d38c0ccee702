package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ferrymq/ferry/partition"
)

// TestErrorCode: the codes a client acts on for the errors whose place
// in the table matters. A request to a peer cut short because this
// broker is stopping wraps the context's error and sends the client to
// the next leader; a wait cut short by a closing connection is of
// unknown outcome, as a timeout; a write that failed is a storage error.
func TestErrorCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want *kerr.Error
	}{
		{fmt.Errorf("%w: %w", errBrokerStopping, context.Canceled), kerr.NotLeaderForPartition},
		{errBrokerStopping, kerr.NotLeaderForPartition},
		{context.Canceled, kerr.RequestTimedOut},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), kerr.RequestTimedOut},
		{partition.ErrStopping, kerr.NotLeaderForPartition},
		{errors.New("write /data/x.log: no space left on device"), kerr.KafkaStorageError},
		{fmt.Errorf("%w: bad", kerr.InvalidRecord), kerr.InvalidRecord},
	} {
		if got, _ := errorCode(tc.err); got != tc.want.Code {
			t.Errorf("%v: code %d (%v), want %v", tc.err, got, kerr.ErrorForCode(got), tc.want)
		}
	}
}
