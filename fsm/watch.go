package fsm

import (
	"strings"
	"sync"
)

// Event is one key change.
type Event struct {
	Key     string `json:"key"`
	Value   []byte `json:"value,omitempty"`
	ModRev  uint64 `json:"mod_rev"`
	Deleted bool   `json:"deleted,omitempty"`
}

// WatchBatch is the changes one Raft entry made under a watched prefix.
// Resync means changes were missed (a slow consumer, or a snapshot restore):
// the consumer must re-read the state instead of relying on the events.
type WatchBatch struct {
	Index  uint64
	Events []Event
	Resync bool
}

type watcher struct {
	prefix string
	ch     chan WatchBatch
	once   sync.Once
	missed bool // guarded by FSM.watchMu
}

func (w *watcher) close() { w.once.Do(func() { close(w.ch) }) }

// Watch subscribes to changes under prefix. Delivery never blocks Apply: when
// the consumer's buffer is full the batch is dropped and the next delivered
// batch carries Resync. Call cancel to unsubscribe.
func (f *FSM) Watch(prefix string, buffer int) (<-chan WatchBatch, func()) {
	if buffer < 1 {
		buffer = 1
	}
	w := &watcher{prefix: prefix, ch: make(chan WatchBatch, buffer)}
	f.watchMu.Lock()
	f.watchers[w] = struct{}{}
	f.watchMu.Unlock()
	return w.ch, func() {
		f.watchMu.Lock()
		delete(f.watchers, w)
		f.watchMu.Unlock()
		w.close()
	}
}

func (f *FSM) notify(b WatchBatch) {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	for w := range f.watchers {
		out := WatchBatch{Index: b.Index, Resync: b.Resync || w.missed}
		for _, e := range b.Events {
			if strings.HasPrefix(e.Key, w.prefix) {
				out.Events = append(out.Events, e)
			}
		}
		if len(out.Events) == 0 && !out.Resync {
			continue
		}
		select {
		case w.ch <- out:
			w.missed = false
		default:
			w.missed = true
		}
	}
}
