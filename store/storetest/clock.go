package storetest

import (
	"sync"
	"time"
)

// Clock is the time every store of a case reads: the harness passes its Now
// to Open, and the backends take it as their clock (sqlite.Options.Now,
// postgres.Options.Now). It follows the real time, plus whatever the case
// added with Advance, until Freeze stops it; from then on only Advance
// moves it.
//
// Cases about time passing — a lease running out, a node falling silent, a
// leadership lapsing, a schedule's slot coming due — advance it instead of
// sleeping, so that they hold however slowly the machine runs: what they
// assert depends on the clock alone, never on how long a step took.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration // added to the real time while running
	frozen bool
	at     time.Time // the reading while frozen
}

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen {
		return c.at
	}
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	if d < 0 {
		panic("storetest: Clock.Advance with a negative duration")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen {
		c.at = c.at.Add(d)
	} else {
		c.offset += d
	}
}

// Freeze stops the clock at its current reading, to the microsecond the
// stores keep; only Advance moves it afterwards. It returns the reading.
func (c *Clock) Freeze() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen {
		c.at = time.Now().Add(c.offset).Round(0).Truncate(time.Microsecond)
		c.frozen = true
	}
	return c.at
}
