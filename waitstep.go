package weft

import (
	"context"
	"fmt"
	"time"
)

// WaitStepKind is the kind of the built-in wait step.
const WaitStepKind = "weft.wait"

// WaitStep is a task — usually a flow step — that does nothing but wait
// for signals: an approval in a flow, with no worker of its own. It
// completes, with the signals it received as its result, once they
// satisfy it; its timeout fails it, cancels it, or (TimeoutResume)
// completes it with timed_out set. Every client with workers runs the
// kind (in the queues it works); signal it by its task id and waitpoint
// name, or with the token of its waitpoint (Client.Waitpoints).
type WaitStep struct {
	// Waitpoint names its waitpoint; default "signal".
	Waitpoint string `json:"waitpoint,omitempty"`
	// Allow lists the signal names it takes; empty takes any.
	Allow []string `json:"allow,omitempty"`
	// Mode and Count combine signals as in WaitFor.
	Mode  WaitMode `json:"mode,omitempty"`
	Count int      `json:"count,omitempty"`
	// Timeout is a Go duration ("24h"); empty means none.
	Timeout   string    `json:"timeout,omitempty"`
	OnTimeout OnTimeout `json:"on_timeout,omitempty"`
}

// Kind implements TaskArgs.
func (WaitStep) Kind() string { return WaitStepKind }

// waitStepResult is a wait step's result.
type waitStepResult struct {
	Signals  []Signal `json:"signals"`
	TimedOut bool     `json:"timed_out,omitempty"`
}

func runWaitStep(ctx context.Context, t *Task[WaitStep]) error {
	a := t.Args
	name := a.Waitpoint
	if name == "" {
		name = "signal"
	}
	var timeout time.Duration
	if a.Timeout != "" {
		d, err := time.ParseDuration(a.Timeout)
		if err != nil || d < 0 {
			return Permanent(fmt.Errorf("weft.wait: timeout %q is not a duration", a.Timeout))
		}
		timeout = d
	}
	wp, err := t.Waitpoint(ctx, name, &WaitpointOpts{Allow: a.Allow})
	if err != nil {
		return err
	}
	if wp.Resolved {
		return t.SetResult(waitStepResult{Signals: wp.Signals, TimedOut: wp.TimedOut()})
	}
	return Wait(WaitFor{Waitpoints: []string{name}, Mode: a.Mode, Count: a.Count, Timeout: timeout, OnTimeout: a.OnTimeout})
}
