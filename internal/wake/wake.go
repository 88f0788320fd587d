// Package wake fans a coalescing "something changed" signal out to any
// number of subscribers without ever blocking the sender.
package wake

import (
	"sync"
	"sync/atomic"
)

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

// Keyed delivers notifications by key (a task id, say) to the subscribers
// of that key, with a Broadcaster's coalescing. A Notify while nobody
// subscribes costs one atomic load, so a store can call it on every commit
// that might concern a subscriber.
type Keyed struct {
	// n counts subscriptions.
	n    atomic.Int64
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// Subscribe registers a subscriber of key. The channel starts empty; stop
// unregisters it and may be called more than once.
func (k *Keyed) Subscribe(key string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	k.mu.Lock()
	if k.subs == nil {
		k.subs = make(map[string]map[chan struct{}]struct{})
	}
	set := k.subs[key]
	if set == nil {
		set = make(map[chan struct{}]struct{})
		k.subs[key] = set
	}
	set[ch] = struct{}{}
	k.n.Add(1)
	k.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			k.mu.Lock()
			// A key's set is dropped once empty, and made anew by the
			// next Subscribe, always under mu: the set is still the
			// key's.
			set := k.subs[key]
			delete(set, ch)
			if len(set) == 0 {
				delete(k.subs, key)
			}
			k.n.Add(-1)
			k.mu.Unlock()
		})
	}
}

// Active reports whether anybody subscribes to any key.
func (k *Keyed) Active() bool { return k.n.Load() > 0 }

// Notify signals the subscribers of each key.
func (k *Keyed) Notify(keys ...string) {
	if !k.Active() {
		return
	}
	k.mu.Lock()
	for _, key := range keys {
		for ch := range k.subs[key] {
			signal(ch)
		}
	}
	k.mu.Unlock()
}

// NotifyAll signals every subscriber of every key: for a change whose keys
// are not known (another process committed something).
func (k *Keyed) NotifyAll() {
	if !k.Active() {
		return
	}
	k.mu.Lock()
	for _, set := range k.subs {
		for ch := range set {
			signal(ch)
		}
	}
	k.mu.Unlock()
}

// signal leaves one pending signal in ch, never blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
