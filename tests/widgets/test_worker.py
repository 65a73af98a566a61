"""The engine's update thread (levitor_widgets.worker) on a real asyncio loop: drafts first, superseded jobs
dropped, results delivered on the loop, errors handed over; without a loop it runs at once."""

from __future__ import annotations

import asyncio
import threading

import pytest

from levitor_widgets.worker import UpdateWorker


def run_loop(main):
    """``asyncio.run(main())`` on a thread of its own, as a kernel's loop is the only loop of its thread (a test
    elsewhere in the suite may leave this thread with a loop marked running, where asyncio.run refuses)."""
    out: dict = {}

    def target():
        try:
            out["value"] = asyncio.run(main())
        except BaseException as e:  # re-raised here, in the test
            out["error"] = e

    t = threading.Thread(target=target, name="test-loop")
    t.start()
    t.join(60)
    assert not t.is_alive(), "the loop did not finish in 60 s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


async def _until(pred, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_drafts_go_first_and_a_superseded_job_never_runs():
    computed, delivered, threads = [], [], []
    gate = threading.Event()

    def job(name, block=False):
        def compute():
            threads.append(threading.current_thread().name)
            if block:
                gate.wait(5)
            computed.append(name)
            return name
        return compute

    async def main():
        w = UpdateWorker(threaded=lambda: True)
        loop_thread = threading.current_thread()
        w.run("full", job("first", block=True), lambda out: delivered.append((out, threading.current_thread())))
        await _until(lambda: w._running is not None)
        w.run("full", job("stale"), lambda out: delivered.append((out, threading.current_thread())))
        w.run("draft", job("draft"), lambda out: delivered.append((out, threading.current_thread())))
        w.run("full", job("newest"), lambda out: delivered.append((out, threading.current_thread())))
        assert not w.idle
        gate.set()
        await _until(lambda: w.idle)
        w.close()
        return loop_thread

    loop_thread = run_loop(main)
    assert computed == ["first", "draft", "newest"]  # "stale" was replaced before it started; the draft went first
    # "first" finished after newer full updates were asked for: dropped; the others were shown, on the loop's thread
    assert [name for name, _ in delivered] == ["draft", "newest"]
    assert all(t is loop_thread for _, t in delivered)
    assert set(threads) == {"levitor-engine-updates"}


def test_a_long_drag_never_starves_each_finished_draft_newer_than_the_screen_is_drawn():
    delivered = []
    gate = threading.Event()

    async def main():
        w = UpdateWorker(threaded=lambda: True)
        w.run("draft", lambda: gate.wait(5) and "move 1", delivered.append)
        await _until(lambda: w._running is not None)
        w.run("draft", lambda: "move 2", delivered.append)  # the next move arrives while the first computes
        gate.set()
        await _until(lambda: w.idle)

    run_loop(main)
    assert delivered == ["move 1", "move 2"]


def test_errors_are_delivered_and_the_thread_goes_on():
    delivered = []

    def boom():
        raise ValueError("path point outside the image")

    async def main():
        w = UpdateWorker(threaded=lambda: True)
        w.run("full", boom, delivered.append)
        await _until(lambda: w.idle)
        w.run("full", lambda: 42, delivered.append)
        await _until(lambda: w.idle)

    run_loop(main)
    assert isinstance(delivered[0], ValueError) and "outside" in str(delivered[0]) and delivered[1] == 42


def test_without_a_loop_it_computes_and_delivers_at_once():
    w, delivered = UpdateWorker(threaded=lambda: False), []
    w.run("draft", lambda: "d", delivered.append)
    w.run("full", lambda: "f", delivered.append)
    assert delivered == ["d", "f"] and w.idle and w._thread is None
    with pytest.raises(ValueError, match="kind must be one of"):
        w.run("everything", lambda: None, delivered.append)
    w.close()
    w.run("full", lambda: "after close", delivered.append)
    assert delivered == ["d", "f"]


def test_flush_delivers_here_once_even_before_the_thread_started():
    delivered = []

    async def main():
        w = UpdateWorker(threaded=lambda: True)
        w.run("full", lambda: "result", delivered.append)
        assert w._thread is None  # it starts on the loop's next turn (the cell's output goes out first)
        w.flush()  # a later cell reads studio.result: it waits for the update and gets it now
        assert delivered == ["result"] and w.idle
        await asyncio.sleep(0.05)  # the posted delivery finds nothing left to do

    run_loop(main)
    assert delivered == ["result"]


def test_a_draft_is_computed_at_once_when_the_engine_is_free_else_on_the_thread():
    delivered, where = [], []
    gate = threading.Event()

    def job(name, block=False):
        def compute():
            where.append(threading.current_thread().name)
            if block:
                gate.wait(5)
            return name
        return compute

    async def main():
        w = UpdateWorker(threaded=lambda: True)
        w.run("draft", job("now"), delivered.append, here_if_free=True)
        assert delivered == ["now"] and w._thread is None  # no trip to a thread and back
        w.run("full", job("full", block=True), delivered.append)
        await _until(lambda: w._running is not None)
        w.run("draft", job("later"), delivered.append, here_if_free=True)  # the engine is busy: queued
        assert delivered == ["now"]
        gate.set()
        await _until(lambda: w.idle)

    run_loop(main)
    assert delivered == ["now", "full", "later"]
    assert where == ["test-loop", "levitor-engine-updates", "levitor-engine-updates"]  # loop, then worker
