"""When the Studio redraws: at once, as a throttled one-frame draft during a burst of edits, and the slower
followers (3D view, scale strip, autosave) after a pause; the panels just after the canvas.

In a kernel the timers run on its event loop (:func:`levitor_widgets.compat.call_soon`); in plain Python and in
tests there is no loop, so everything runs at once. The scheduler only decides *when*; the Studio gives it the
jobs (``draft``, ``full``, ``side`` and ``panels``).

Why the panels wait a moment: a browser handles the kernel's messages in order, and a dozen widget updates (a
new object's row, the path table, the buttons) that arrive right behind the canvas's drawing keep it from
painting that drawing until it has laid them all out. Sent PANELS_AFTER_S later, they let the canvas paint first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from levitor_widgets import compat

DRAG_REFRESH_S = 0.03  # during a slider/drag burst: at most one one-frame draft per ~30 ms ...
SETTLE_REFRESH_S = 0.12  # ... and the full update once the burst has paused this long
SIDE_REFRESH_S = 0.3  # 3D view, scale strip and autosave follow edits after a short pause
PANELS_AFTER_S = 0.04  # the panels follow the canvas's drawing after about two browser frames

Job = Callable[[], None]


class RedrawScheduler:
    def __init__(self, draft: Job, full: Job, side: Job, *, panels: Job = lambda: None,
                 can_draft: Callable[[], bool] = lambda: True, call_soon: Callable | None = None,
                 defers: Callable[[], bool] | None = None, clock: Callable[[], float] = time.perf_counter,
                 busy: Callable[[], bool] = lambda: False):
        self._draft_job, self._full_job, self._side_job, self._panels_job = draft, full, side, panels
        self.can_draft = can_draft
        self.busy = busy  # the jobs' own work still going on elsewhere (the engine's thread)
        self._call_soon = call_soon or compat.call_soon
        self._defers = defers or compat.defers
        self.clock = clock
        self.pending_full = None  # timer handles (None: nothing waiting)
        self.pending_draft = None
        self.pending_side = None
        self.pending_after = None  # the jobs that follow the canvas (see after_canvas)
        self._after: dict[str, Job] = {}
        self.last_draft = float("-inf")
        self.closed = False

    @property
    def idle(self) -> bool:
        """Nothing scheduled or still being computed (tests wait for this before measuring)."""
        return (self.pending_full is None and self.pending_draft is None and self.pending_side is None
                and self.pending_after is None and not self.busy())

    def full(self) -> None:
        """Recompute and redraw now; it supersedes any draft or full update that was waiting."""
        self._cancel("pending_full")
        self._cancel("pending_draft")
        if not self.closed:
            self._full_job()

    def burst(self) -> None:
        """One edit of a drag or slider storm: in a kernel a one-frame draft now (or within DRAG_REFRESH_S) and
        the full update once the edits pause for SETTLE_REFRESH_S; elsewhere the full update at once."""
        if self.closed:
            return
        if not self._defers() or not self.can_draft():
            self.full()
            return
        if self.pending_draft is None:
            wait = DRAG_REFRESH_S - (self.clock() - self.last_draft)
            if wait <= 0:
                self._run_draft()
            else:
                self.pending_draft = self._call_soon(wait, self._run_draft)
        self._cancel("pending_full")
        self.pending_full = self._call_soon(SETTLE_REFRESH_S, self._run_full)

    def side(self) -> None:
        """The followers, once, after SIDE_REFRESH_S (edits meanwhile are coalesced)."""
        if self.pending_side is None and not self.closed:
            self.pending_side = self._call_soon(SIDE_REFRESH_S, self._run_side)

    def panels(self) -> None:
        """The panels, PANELS_AFTER_S from now in a kernel (requests meanwhile are coalesced), else at once."""
        self.after_canvas("panels", self._panels_job)

    def after_canvas(self, name: str, job: Job) -> None:
        """``job`` PANELS_AFTER_S from now in a kernel, with the other jobs waiting then (the newest job of each
        ``name``), else at once: for widget updates that should not hold back the canvas's drawing."""
        if self.closed:
            return
        if not self._defers():
            job()
            return
        self._after[name] = job
        if self.pending_after is None:
            self.pending_after = self._call_soon(PANELS_AFTER_S, self._after_due)

    def flush(self) -> None:
        """Run what is waiting now (a closing Studio saves its last edit)."""
        if self.pending_after is not None:
            self._cancel("pending_after")
            self._run_after()
        if self.pending_full is not None or self.pending_draft is not None:
            self.full()
        if self.pending_side is not None:
            self._cancel("pending_side")
            self._side_job()

    def close(self) -> None:
        self.flush()
        self.closed = True

    # ------------------------------------------------------------------ timers
    def _run_full(self) -> None:
        self.pending_full = None
        if not self.closed:
            self.full()

    def _run_draft(self) -> None:
        self.pending_draft = None
        if not self.closed:
            self._draft_job()
            self.last_draft = self.clock()

    def _after_due(self) -> None:
        self.pending_after = None
        if not self.closed:
            self._run_after()

    def _run_after(self) -> None:
        jobs, self._after = list(self._after.values()), {}
        for job in jobs:
            job()

    def _run_side(self) -> None:
        self.pending_side = None
        if not self.closed:
            self._side_job()

    def _cancel(self, name: str) -> None:
        handle = getattr(self, name)
        if handle is not None:
            handle.cancel()
            setattr(self, name, None)
