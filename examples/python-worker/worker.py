#!/usr/bin/env python3
"""A Weft remote worker in Python, using only the standard library.

It claims tasks of its kinds from a running `weft serve` over the HTTP API,
runs them, heartbeats while they run, and completes or fails them under the
lease token each claim returns. Run it next to a server:

    weft serve &
    python3 examples/python-worker/worker.py --kinds py.upper,py.sum
    weft enqueue py.upper --args '{"text": "hello"}'

Environment: WEFT_SERVER (default http://127.0.0.1:7070) and WEFT_API_TOKEN.
Stop it with Ctrl-C (or SIGTERM): it stops claiming and finishes what it has.
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
            if e.code == 409 and err.get("code") == "lease_lost":
                raise LeaseLost(err.get("message", "lease lost")) from None
            raise RuntimeError(f"{method} {path}: {e.code} {err.get('code')}: {err.get('message')}") from None

    def claim(self, worker_id, queues, kinds, max_tasks, wait="30s", lease_ttl="30s"):
        body = {"worker_id": worker_id, "queues": queues, "kinds": kinds,
                "max": max_tasks, "wait": wait, "lease_ttl": lease_ttl}
        return self.call("POST", "/v1/claims", body)["tasks"]

    def heartbeat(self, task):
        return self.call("POST", f"/v1/tasks/{task['id']}/heartbeat", {"lease_token": task["lease_token"]})

    def complete(self, task, result):
        return self.call("POST", f"/v1/tasks/{task['id']}/complete",
                         {"lease_token": task["lease_token"], "result": result})

    def fail(self, task, error, permanent=False, cancel=False):
        return self.call("POST", f"/v1/tasks/{task['id']}/fail",
                         {"lease_token": task["lease_token"], "error": error,
                          "permanent": permanent, "cancel": cancel})


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


def run_task(weft, task):
    """Runs one task, heartbeating every lease/3 until it is done.

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
        try:
            handler = HANDLERS[task["kind"]]
            result = handler(task.get("args") or {})
        except Permanent as e:
            weft.fail(task, str(e), permanent=True)
        except Exception as e:
            weft.fail(task, f"{type(e).__name__}: {e}")
        else:
            if cancelled.is_set():
                weft.fail(task, "cancelled while running", cancel=True)
            else:
                weft.complete(task, result)
    except LeaseLost:
        print(f"task {task['id']}: lease lost, dropping it", file=sys.stderr)
    except Exception as e:
        # The lease will expire and the server will hand the task out again.
        print(f"task {task['id']}: reporting the outcome failed: {e}", file=sys.stderr)
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
                    run_task(weft, t)
                finally:
                    slots.release()
            th = threading.Thread(target=work)
            th.start()
            running.append(th)
        running = [t for t in running if t.is_alive()]
    for th in running:
        th.join()


if __name__ == "__main__":
    main()
