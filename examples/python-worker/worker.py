#!/usr/bin/env python3
"""A Weft remote worker in Python, using only the standard library.

It claims tasks of its kinds from a running `weft serve` over the HTTP API,
runs them, heartbeats while they run, and reports their outcomes under the
lease token each claim returns, many in one request. Run it next to a server:

    weft serve &
    python3 examples/python-worker/worker.py --kinds py.upper,py.sum
    weft enqueue py.upper --args '{"text": "hello"}'

It prints one line per recorded outcome on stdout, "<id> <kind> <state>"
(completed, failed, pending for a retry, ...); problems go to stderr.

Environment: WEFT_SERVER (default http://127.0.0.1:7070) and WEFT_API_TOKEN.
Stop it with Ctrl-C (or SIGTERM): it stops claiming and finishes what it has.
A server that refuses the token (401) stops it at once, with exit status 1.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request


class LeaseLost(Exception):
    """The server answered 409 lease_lost: someone else owns the task now."""


class Unauthorized(Exception):
    """The server answered 401: the token is missing or wrong. Trying again
    cannot help, so the worker stops."""


class Weft:
    """A minimal client for the endpoints a worker needs."""

    def __init__(self, server, token=None):
        self.server = server.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, timeout=75):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            err = json.loads(e.read() or b"{}").get("error", {})
            if e.code == 401:
                raise Unauthorized(
                    f"{self.server} refused the token (401 unauthorized): "
                    "set WEFT_API_TOKEN to the server's token") from None
            if e.code == 409 and err.get("code") == "lease_lost":
                raise LeaseLost(err.get("message", "lease lost")) from None
            raise RuntimeError(f"{method} {path}: {e.code} {err.get('code')}: {err.get('message')}") from None

    def claim(self, worker_id, queues, kinds, max_tasks, wait="30s", lease_ttl="30s"):
        body = {"worker_id": worker_id, "queues": queues, "kinds": kinds,
                "max": max_tasks, "wait": wait, "lease_ttl": lease_ttl}
        return self.call("POST", "/v1/claims", body)["tasks"]

    def heartbeat(self, task):
        return self.call("POST", f"/v1/tasks/{task['id']}/heartbeat", {"lease_token": task["lease_token"]})

    def report(self, outcomes):
        """Reports up to 1,000 outcomes; returns one result per outcome."""
        return self.call("POST", "/v1/outcomes", {"outcomes": outcomes})["outcomes"]


class Reporter:
    """Reports finished tasks' outcomes in batches, from a thread of its own.

    Whatever finished while the previous batch was on its way goes out
    together in the next request, so a busy worker makes one request for
    many tasks rather than one for each.
    """

    MAX_BATCH = 1000  # the most outcomes one request may carry

    def __init__(self, weft, stop):
        self.weft = weft
        self.stop = stop  # set when the server refuses the token
        self.refused = None  # the Unauthorized that stopped it
        self.waiting = []  # (outcome, kind) pairs
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def add(self, task, **outcome):
        """Queues a task's outcome: result=... to complete it, or error=...
        (with permanent=True, cancel=True, retry_in or snooze) to fail it."""
        with self.cond:
            self.waiting.append(({"id": task["id"], "lease_token": task["lease_token"], **outcome}, task["kind"]))
            self.cond.notify()

    def close(self):
        """Reports what is still waiting, then stops."""
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join()

    def run(self):
        while True:
            with self.cond:
                while not self.waiting and not self.closed:
                    self.cond.wait()
                if not self.waiting:
                    return
                batch = self.waiting[:self.MAX_BATCH]
                del self.waiting[:self.MAX_BATCH]
            self.send(batch)

    def send(self, batch):
        outcomes = [outcome for outcome, _ in batch]
        for _ in range(3):
            try:
                results = self.weft.report(outcomes)
                break
            except Unauthorized as e:
                self.refused = e
                self.stop.set()
                return
            except Exception as e:  # send them again: any recorded after all are answered lease_lost
                print(f"reporting {len(batch)} outcomes: {e}", file=sys.stderr)
                time.sleep(1)
        else:
            # Their leases will expire and the server will hand them out again.
            print(f"giving up on {len(batch)} outcomes", file=sys.stderr)
            return
        for (outcome, kind), result in zip(batch, results):
            err = result.get("error")
            if not err:
                # One line per recorded outcome on stdout, for people and
                # for scripts: "<id> <kind> <state>".
                print(f"{outcome['id']} {kind} {result['state']}", flush=True)
            elif err["code"] == "lease_lost":
                print(f"task {outcome['id']}: lease lost, dropping it", file=sys.stderr)
            elif err:
                print(f"task {outcome['id']}: outcome refused: {err['code']}: {err['message']}", file=sys.stderr)


class Permanent(Exception):
    """Raised by a handler when retrying cannot help."""


# The handlers: one function per kind, taking the task's args.
def upper(args):
    if not isinstance(args.get("text"), str):
        raise Permanent("args.text must be a string")
    return {"text": args["text"].upper()}


def total(args):
    return {"sum": sum(args.get("numbers", []))}


HANDLERS = {"py.upper": upper, "py.sum": total}


def run_task(weft, reporter, task):
    """Runs one task, heartbeating every lease/3 until it is done, and hands
    its outcome to the reporter.

    A handler here cannot be interrupted, so a cancel request seen by a
    heartbeat is honoured when it returns: the attempt ends cancelled.
    """
    done = threading.Event()
    cancelled = threading.Event()

    def beat():
        while not done.wait(10):
            try:
                if weft.heartbeat(task).get("cancel_requested"):
                    cancelled.set()
            except LeaseLost:
                return
            except Exception as e:  # the next beat may get through
                print(f"heartbeat {task['id']}: {e}", file=sys.stderr)

    threading.Thread(target=beat, daemon=True).start()
    try:
        handler = HANDLERS[task["kind"]]
        result = handler(task.get("args") or {})
    except Permanent as e:
        reporter.add(task, error=str(e), permanent=True)
    except Exception as e:
        reporter.add(task, error=f"{type(e).__name__}: {e}")
    else:
        if cancelled.is_set():
            reporter.add(task, error="cancelled while running", cancel=True)
        else:
            reporter.add(task, result=result)
    finally:
        done.set()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default=os.environ.get("WEFT_SERVER", "http://127.0.0.1:7070"))
    p.add_argument("--queues", default="default", help="comma-separated queues")
    p.add_argument("--kinds", default=",".join(HANDLERS), help="comma-separated kinds")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--exit-when-idle", action="store_true",
                   help="exit once a claim finds nothing (for tests and batch jobs)")
    opts = p.parse_args()

    weft = Weft(opts.server, os.environ.get("WEFT_API_TOKEN"))
    worker_id = f"py-{socket.gethostname()}-{os.getpid()}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    slots = threading.Semaphore(opts.concurrency)
    reporter = Reporter(weft, stop)
    refused = None
    running = []
    print(f"{worker_id}: working {opts.kinds} on {opts.queues} at {opts.server}", file=sys.stderr)
    while not stop.is_set():
        free = 0
        while slots.acquire(blocking=False):
            free += 1
        if free == 0:
            slots.acquire()
            free = 1
        try:
            tasks = weft.claim(worker_id, opts.queues.split(","), opts.kinds.split(","), free,
                               wait="0s" if opts.exit_when_idle else "5s")
        except Unauthorized as e:
            refused = e
            break
        except Exception as e:
            print(f"claim: {e}; retrying in 1s", file=sys.stderr)
            tasks = []
            time.sleep(1)
        for _ in range(free - len(tasks)):
            slots.release()
        if not tasks and opts.exit_when_idle:
            break

        for task in tasks:
            def work(t=task):
                try:
                    run_task(weft, reporter, t)
                finally:
                    slots.release()
            th = threading.Thread(target=work)
            th.start()
            running.append(th)
        running = [t for t in running if t.is_alive()]
    for th in running:
        th.join()
    reporter.close()
    refused = refused or reporter.refused
    if refused:
        sys.exit(f"{worker_id}: stopping: {refused}")


if __name__ == "__main__":
    main()
