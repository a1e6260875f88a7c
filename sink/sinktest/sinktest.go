// Package sinktest is test vocabulary every sink's tests share. Imported by
// tests only.
package sinktest

import (
	"sync"
	"testing"
	"time"
)

// StalledLease is a lease (for sink.WithLease) that holds, but whose first
// check blocks until Release: the writer then sits between its lease check
// and the write it guards, as a capture frozen there by SIGSTOP does.
type StalledLease struct {
	once     sync.Once
	checking chan struct{}
	release  chan struct{}
}

// NewStalledLease returns a lease whose first check will stall.
func NewStalledLease() *StalledLease {
	return &StalledLease{checking: make(chan struct{}), release: make(chan struct{})}
}

// Holds is the lease's check, for sink.WithLease.
func (l *StalledLease) Holds() bool {
	first := false
	l.once.Do(func() { first = true })
	if first {
		close(l.checking)
		<-l.release
	}
	return true
}

// WaitChecking waits until the writer is inside its first lease check.
func (l *StalledLease) WaitChecking(t testing.TB) {
	t.Helper()
	select {
	case <-l.checking:
	case <-time.After(time.Minute):
		t.Fatal("the writer did not reach its lease check within a minute")
	}
}

// Release lets the stalled check return (the lease held).
func (l *StalledLease) Release() { close(l.release) }
