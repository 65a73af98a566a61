"""The engine's worker threads: how many, and the setting that changes it."""

import os

import pytest

from levitor._util.threads import MAX_WORKERS, worker_count


def test_worker_count_follows_the_cpus_or_levitor_threads(monkeypatch):
    monkeypatch.delenv("LEVITOR_THREADS", raising=False)
    assert worker_count() == max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    monkeypatch.setenv("LEVITOR_THREADS", "3")
    assert worker_count() == 3
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("LEVITOR_THREADS", bad)
        with pytest.raises(ValueError, match="LEVITOR_THREADS must be a whole number >= 1"):
            worker_count()
