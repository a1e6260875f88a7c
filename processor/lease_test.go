package processor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/sink"
)

const leaseLength = 300 * time.Millisecond

// renewingLease is a lease that lasts leaseLength from its last renewal,
// renewed every 25 ms until the test stops it or moves it to another term.
// The margin between the two is how long the renewing goroutine may go
// unscheduled before the lease lapses by accident: 75 ms was within reach
// of a two-core machine running other packages' tests under -race.
type renewingLease struct {
	mu    sync.Mutex
	until time.Time
	term  uint64
}

func (l *renewingLease) Lease() (time.Time, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.until, l.term
}

func (l *renewingLease) renew(stop <-chan struct{}) {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		l.mu.Lock()
		l.until = time.Now().Add(leaseLength)
		l.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// TestSinkCallOutlastsARenewedLease: a sink call may take longer than one
// lease (a storage sink's Flush waits for its flush round) as long as the
// lease is renewed under the same term; it is cancelled, with cause
// ErrLeaseExpired, once the renewals stop or the term changes (LeaseValid
// refuses at once on a new term). With a fixed deadline at the lease's end
// every such flush failed.
func TestSinkCallOutlastsARenewedLease(t *testing.T) {
	for _, lapse := range []string{"renewals stop", "term changes"} {
		t.Run(lapse, func(t *testing.T) {
			l := &renewingLease{term: 3, until: time.Now().Add(leaseLength)}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { defer close(done); l.renew(stop) }()
			t.Cleanup(func() {
				select {
				case <-stop:
				default:
					close(stop)
				}
				<-done
			})
			until, term := l.Lease()
			ctx, cancel := followLease(context.Background(), l, term, until)
			defer cancel()

			// Over three leases long: still going, and the lease holds.
			select {
			case <-ctx.Done():
				t.Fatalf("cancelled while the lease was being renewed: %v", context.Cause(ctx))
			case <-time.After(3*leaseLength + 100*time.Millisecond):
			}
			if err := sink.LeaseValid(ctx); err != nil {
				t.Fatalf("LeaseValid while renewed: %v", err)
			}

			lapsed := time.Now()
			if lapse == "renewals stop" {
				close(stop)
				<-done
			} else {
				l.mu.Lock()
				l.term++
				l.mu.Unlock()
			}
			if err := sink.LeaseValid(ctx); lapse == "term changes" && !errors.Is(err, sink.ErrLeaseExpired) {
				t.Fatalf("LeaseValid right after the term changed = %v, want ErrLeaseExpired", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("not cancelled after the lease lapsed")
			}
			if !errors.Is(context.Cause(ctx), sink.ErrLeaseExpired) || !errors.Is(sink.LeaseValid(ctx), sink.ErrLeaseExpired) {
				t.Fatalf("cause %v, LeaseValid %v; want ErrLeaseExpired", context.Cause(ctx), sink.LeaseValid(ctx))
			}
			t.Logf("cancelled %v after the lapse", time.Since(lapsed).Round(time.Millisecond))
		})
	}
}
