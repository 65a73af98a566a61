"""The engine's updates off the kernel's event loop: one background thread, the newest job of each kind, drafts
before full updates, results handed back to the loop.

In a kernel, a full 16-frame update takes 50-150 ms on a CPU; run on the loop it would hold back the next click
or slider value (and the draft that answers it) until it is done. Here the loop only posts jobs and draws results:
``run(kind, compute, deliver)`` replaces the job of that kind still waiting (an edit supersedes the one before),
the thread takes a waiting draft before a waiting full update, and ``deliver`` runs on the loop, only for the
newest job whose result has not been overtaken (a late full update never paints over a newer draft, nor a draft
over a newer full update; a full update superseded by a newer one is dropped, a draft newer than what is shown is
drawn even when another is already coming, so a long drag never starves). ``compute`` runs holding ``lock``:
whoever else uses the engine (the scale strip) takes it too.

Without a running kernel loop (plain Python, the tests) there is no thread: ``run`` computes and delivers at once.
``flush()`` waits for the thread and delivers on the caller's thread: code that needs the newest result now (the
notebook's next cell reading ``studio.result``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from levitor_widgets import compat

KINDS = ("draft", "full")  # the order the thread takes waiting jobs in
FLUSH_WAIT_S = 300.0  # flush() gives up after this: a first update that compiles the kernels takes a minute at most


@dataclass
class Job:
    kind: str
    seq: int  # submission order: a larger one is newer
    compute: Callable[[], Any]
    deliver: Callable[[Any], None]
    post: Callable[[Callable[[], None]], None]  # runs a callable on the loop the job came from


class UpdateWorker:
    """See the module docstring. ``threaded()``: whether to use the thread (default: inside a kernel's loop)."""

    def __init__(self, threaded: Callable[[], bool] = compat.defers):
        self.threaded = threaded
        self.lock = threading.RLock()  # held while a job computes
        self._cond = threading.Condition()
        self._waiting: dict[str, Job] = {}
        self._running: Job | None = None
        self._latest: dict[str, int] = {}  # kind -> seq of the newest job submitted
        self._shown = 0  # seq of the newest job delivered
        self._ready: list[tuple[Job, Any]] = []  # results posted to the loop, not yet delivered
        self._seq = 0
        self._thread: threading.Thread | None = None
        self.closed = False

    @property
    def idle(self) -> bool:
        """Nothing waiting, computing, or on its way to the loop (tests and the bench wait for this)."""
        with self._cond:
            return not self._waiting and self._running is None and not self._ready

    def run(self, kind: str, compute: Callable[[], Any], deliver: Callable[[Any], None], here_if_free: bool = False
            ) -> None:
        """Compute (on the thread, in a kernel) and deliver the result (on the loop); see the module docstring.

        ``here_if_free``: compute and deliver right here when the engine is free (no job running or waiting): a
        draft answers its event at once, and handing it to the thread and back would only add the trip."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if self.closed:
            return
        self._seq += 1
        if not self.threaded():
            with self.lock:
                out = compute()
            self._shown = self._seq
            deliver(out)
            return
        if here_if_free and self._run_here(kind, compute, deliver):
            return
        loop = asyncio.get_running_loop()
        job = Job(kind, self._seq, compute, deliver, loop.call_soon_threadsafe)
        with self._cond:
            self._waiting[kind] = job  # supersedes the job of this kind that had not started
            self._latest[kind] = job.seq
            self._cond.notify()
        if self._thread is None:  # started on the loop's next turn: what the caller shows goes out first (the
            loop.call_soon(self._start)  # thread's first imports would hold the import lock the display needs)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="levitor-engine-updates")
            self._thread.start()

    def _run_here(self, kind: str, compute: Callable[[], Any], deliver: Callable[[Any], None]) -> bool:
        with self._cond:
            if self._waiting or self._running is not None or not self.lock.acquire(blocking=False):
                return False
            self._latest[kind] = self._seq
        try:
            out = compute()
        except BaseException as e:
            out = e
        finally:
            self.lock.release()
        self._shown = max(self._shown, self._seq)
        deliver(out)
        return True

    def flush(self, timeout_s: float = FLUSH_WAIT_S) -> None:
        """Wait until the thread has computed everything waiting, then deliver the results here, now."""
        deadline = time.monotonic() + timeout_s
        if self._waiting:
            self._start()
        with self._cond:
            while (self._waiting or self._running is not None) and not self.closed:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"the engine's update did not finish within {timeout_s:g} s")
            ready = list(self._ready)
        for job, out in ready:
            self._deliver(job, out)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._waiting.clear()
            self._cond.notify_all()

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self.closed:
                    self._cond.wait()  # notify_all also wakes flush(): it waits on the same condition
                if self.closed:
                    return
                job = self._waiting.pop(next(k for k in KINDS if k in self._waiting))
                self._running = job
            try:
                with self.lock:
                    out = job.compute()
            except BaseException as e:  # handed to deliver: the loop says what happened, the thread goes on
                out = e
            with self._cond:
                self._running = None
                self._ready.append((job, out))
                self._cond.notify_all()
            job.post(lambda job=job, out=out: self._deliver(job, out))

    def _deliver(self, job: Job, out: Any) -> None:
        """On the loop: show the result unless a newer job of its kind was submitted or a newer one was shown (or
        :meth:`flush` delivered it already)."""
        with self._cond:
            entry = next((e for e in self._ready if e[0] is job), None)
            if entry is None:
                return
            self._ready.remove(entry)
            current = job.seq > self._shown and (job.kind == "draft" or job.seq == self._latest.get(job.kind))
            if current:
                self._shown = job.seq
        if current and not self.closed:
            job.deliver(out)


class EngineSlot:
    """The live view's engine, made on first use: by the first engine job, which in a kernel runs on the worker's
    thread, so the cell that shows the Studio never waits for torch's import (a second). Replacing the engine (a
    new scene, another model's rules) is a new slot: a job's result is shown only while its slot is the Studio's."""

    def __init__(self, make: Callable[[Any], Any]):
        self._make = make
        self._engine: Any = None
        self._lock = threading.Lock()

    def get(self, scene: Any) -> Any:
        """The engine, made for ``scene`` if this is the first use."""
        with self._lock:
            if self._engine is None:
                self._engine = self._make(scene)
            return self._engine
