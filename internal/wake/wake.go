// Package wake fans a coalescing "something changed" signal out to any
// number of subscribers without ever blocking the sender.
package wake

import "sync"

// Broadcaster delivers Notify calls to every subscriber. Each subscriber's
// channel holds at most one pending signal, so a burst of notifications
// costs a slow subscriber one wakeup and the sender never waits.
type Broadcaster struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe registers a subscriber. The channel starts empty; stop
// unregisters it and may be called more than once.
func (b *Broadcaster) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[chan struct{}]struct{})
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

// Notify signals every subscriber.
func (b *Broadcaster) Notify() {
	b.mu.Lock()
	for ch := range b.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	b.mu.Unlock()
}
