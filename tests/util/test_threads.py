"""The engine's worker threads: how many, and the setting that changes it."""

import os
import signal

import pytest

from levitor._util.threads import MAX_WORKERS, parallel_map, worker_count


def test_worker_count_follows_the_cpus_or_levitor_threads(monkeypatch):
    monkeypatch.delenv("LEVITOR_THREADS", raising=False)
    assert worker_count() == max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    monkeypatch.setenv("LEVITOR_THREADS", "3")
    assert worker_count() == 3
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("LEVITOR_THREADS", bad)
        with pytest.raises(ValueError, match="LEVITOR_THREADS must be a whole number >= 1"):
            worker_count()


def test_parallel_map_keeps_the_order_raises_the_first_error_and_works_in_a_forked_child(monkeypatch):
    monkeypatch.setenv("LEVITOR_THREADS", "3")
    assert parallel_map(lambda x: x * x, list(range(50))) == [x * x for x in range(50)]
    with pytest.raises(ZeroDivisionError):
        parallel_map(lambda x: 1 // (x - 7), list(range(10)))
    # a DataLoader worker is a fork of a process whose pool has threads; the child's has none: it must start its own
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: writes "ok" only if the map finishes (and is killed after 30 s if it hangs)
        signal.alarm(30)
        try:
            os.write(write, b"ok" if parallel_map(lambda x: x + 1, [1, 2, 3]) == [2, 3, 4] else b"no")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 2) == b"ok" and status == 0
