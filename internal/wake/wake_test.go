package wake

import (
	"sync"
	"testing"
	"time"
)

// pending reports whether ch holds a signal, taking it if so.
func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitLimit bounds waits for what must happen promptly; generous, so that a
// loaded machine does not fail the tests.
const waitLimit = 30 * time.Second

func subscribers(b *Broadcaster) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

func TestSubscribeStartsEmpty(t *testing.T) {
	var b Broadcaster
	ch, stop := b.Subscribe()
	defer stop()
	if pending(ch) {
		t.Fatal("new subscription holds a signal before any Notify")
	}
}

func TestEverySubscriberGetsSignal(t *testing.T) {
	var b Broadcaster
	const n = 5
	chans := make([]<-chan struct{}, n)
	for i := range chans {
		ch, stop := b.Subscribe()
		defer stop()
		chans[i] = ch
	}
	b.Notify()
	for i, ch := range chans {
		if !pending(ch) {
			t.Errorf("subscriber %d got no signal", i)
		}
	}
}

func TestSignalsCoalesce(t *testing.T) {
	var b Broadcaster
	ch, stop := b.Subscribe()
	defer stop()
	for range 100 {
		b.Notify()
	}
	if got := len(ch); got != 1 {
		t.Fatalf("after 100 Notify calls the channel holds %d values, want 1", got)
	}
	if !pending(ch) {
		t.Fatal("no signal after Notify")
	}
	if pending(ch) {
		t.Fatal("second signal pending after one receive; signals did not coalesce")
	}
	// A later Notify is delivered again.
	b.Notify()
	if !pending(ch) {
		t.Fatal("no signal after a Notify following a receive")
	}
}

func TestNotifyNeverBlocks(t *testing.T) {
	var b Broadcaster
	// Nobody ever reads these.
	for range 3 {
		_, stop := b.Subscribe()
		defer stop()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 10000 {
			b.Notify()
		}
	}()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Notify blocked with unread subscribers")
	}
}

// Notify on the zero value, and after the last subscriber stopped, returns
// and leaves nothing behind: a later subscription starts empty, and the next
// Notify reaches it.
func TestNotifyWithoutSubscribers(t *testing.T) {
	var b Broadcaster
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		b.Notify() // the zero value
		_, stop := b.Subscribe()
		stop()
		b.Notify() // after the last subscriber left
	}()
	select {
	case <-returned:
	case <-time.After(waitLimit):
		t.Fatal("Notify without subscribers did not return")
	}
	if got := subscribers(&b); got != 0 {
		t.Fatalf("%d subscribers registered after the only one stopped, want 0", got)
	}
	ch, stop := b.Subscribe()
	defer stop()
	if pending(ch) {
		t.Fatal("a Notify made before the subscription reached it")
	}
	b.Notify()
	if !pending(ch) {
		t.Fatal("a subscriber after Notify calls without subscribers got no signal from the next one")
	}
}

func TestStopUnsubscribes(t *testing.T) {
	var b Broadcaster
	ch, stop := b.Subscribe()
	other, stopOther := b.Subscribe()
	defer stopOther()

	stop()
	b.Notify()
	if pending(ch) {
		t.Fatal("stopped subscriber still got a signal")
	}
	if !pending(other) {
		t.Fatal("stopping one subscriber silenced another")
	}
	if got := subscribers(&b); got != 1 {
		t.Fatalf("%d subscribers registered after one stop, want 1", got)
	}

	stop() // second call must be harmless
	b.Notify()
	if pending(ch) {
		t.Fatal("stopped subscriber got a signal after a second stop")
	}
	if !pending(other) {
		t.Fatal("second stop of one subscriber silenced another")
	}
	if got := subscribers(&b); got != 1 {
		t.Fatalf("%d subscribers registered after a second stop, want 1", got)
	}
}

func TestConcurrentSubscribeNotifyStop(t *testing.T) {
	var b Broadcaster
	const (
		subscribersN = 16
		rounds       = 200
		notifiers    = 4
	)
	var notifying sync.WaitGroup
	quit := make(chan struct{})
	for range notifiers {
		notifying.Add(1)
		go func() {
			defer notifying.Done()
			for {
				select {
				case <-quit:
					return
				default:
					b.Notify()
				}
			}
		}()
	}

	var subs sync.WaitGroup
	errs := make(chan string, subscribersN)
	for range subscribersN {
		subs.Add(1)
		go func() {
			defer subs.Done()
			for range rounds {
				ch, stop := b.Subscribe()
				// A Notify after Subscribe returned must reach us.
				b.Notify()
				select {
				case <-ch:
				case <-time.After(waitLimit):
					errs <- "subscriber missed a Notify made after it subscribed"
					stop()
					return
				}
				stop()
				stop()
			}
		}()
	}
	subs.Wait()
	close(quit)
	notifying.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if got := subscribers(&b); got != 0 {
		t.Fatalf("%d subscribers still registered after every stop", got)
	}
}

func TestKeyedSignalsOnlyItsKey(t *testing.T) {
	var k Keyed
	if k.Active() {
		t.Fatal("active before any subscription")
	}
	a, stopA := k.Subscribe("a")
	b, stopB := k.Subscribe("b")
	a2, stopA2 := k.Subscribe("a")
	k.Notify("a")
	k.Notify("a")
	if !pending(a) || !pending(a2) {
		t.Fatal("a subscriber of a missed its signal")
	}
	if pending(a) || pending(b) {
		t.Fatal("signals did not coalesce, or reached another key")
	}
	k.NotifyAll()
	if !pending(a) || !pending(b) || !pending(a2) {
		t.Fatal("NotifyAll missed a subscriber")
	}
	stopA()
	stopA() // a second stop is a no-op
	k.Notify("a")
	if pending(a) || !pending(a2) {
		t.Fatal("a stopped subscription was signalled, or the other one was not")
	}
	stopA2()
	stopB()
	if k.Active() {
		t.Fatal("active after every subscription stopped")
	}
	k.mu.Lock()
	left := len(k.subs)
	k.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d keys kept after their last subscription stopped", left)
	}
}
