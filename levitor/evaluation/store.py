"""Where a (sharded, resumable) evaluation keeps what it has done, so a killed run goes on where it stopped and
the ranks' results merge into one table.

    <out>/per_clip/rank-00003.jsonl          one JSON line per (clip, setting) that rank evaluated, appended as it
                                             goes (a clip's features are on disk before its line is written)
    <out>/features/<setting>/<clip>.npz      that clip's FID/FVD features (real and generated; float32, as the
                                             extractor returned them), so a resumed run still counts it
    <out>/stats/<setting>-rank-00003-of-00008.npz   each rank's FeatureStats over its share, merged by rank 0
    <out>/eval_settings.json                 what was evaluated (and with how many torch threads); a resume with
                                             other settings is refused

A row is done when its line is whole (ends with a newline); a line torn by a kill is ignored, and the rank that owns
the file cuts it off before appending, so no (clip, setting) is ever written twice. Any number of ranks may resume
the work of any other number: the done set is read from every rank's file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from levitor._util.io import atomic_path, write_text_atomic
from levitor.evaluation.metrics import FeatureStats

ROWS_DIR = "per_clip"
FEATURES_DIR = "features"
STATS_DIR = "stats"
SETTINGS_FILE = "eval_settings.json"
FAILED = "failed"            # the setting of a row that records a clip which could not be evaluated


def slug(name: str) -> str:
    """A clip name as a file name."""
    import re

    return re.sub(r"[^A-Za-z0-9._@-]", "_", name)


class ResultStore:
    """The per-clip rows, features and per-rank statistics of one evaluation folder (see the module doc)."""

    def __init__(self, out: str | Path, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank {rank} of {world_size}")
        self.out, self.rank, self.world_size = Path(out), rank, world_size
        self.rows_file = self.out / ROWS_DIR / f"rank-{rank:05d}.jsonl"
        self._tail_checked = False         # only this rank appends to its file: one check per run is enough

    # ------------------------------------------------------------------------------------------ settings
    def saved_settings(self) -> dict[str, Any] | None:
        """The settings the folder's results were made with (None: no results yet)."""
        path = self.out / SETTINGS_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def check_settings(self, settings: dict[str, Any], may_change: tuple[str, ...] = ()) -> None:
        """Write the settings, or refuse if the folder holds results made with others. Keys in ``may_change``
        (checked by the caller) are not compared; the file then records their new values."""
        settings = json.loads(json.dumps(settings))      # as the file will hold it (tuples become lists)
        old = self.saved_settings()
        if old is not None:
            keys = sorted((set(old) | set(settings)) - set(may_change))
            diff = {k: (old.get(k), settings.get(k)) for k in keys if old.get(k) != settings.get(k)}
            if diff:
                raise ValueError(f"{self.out} holds an evaluation made with other settings {{name: (there, now)}}: "
                                 f"{diff}. Use another --out, or --no-resume to start over there.")
            if all(old.get(k) == settings.get(k) for k in may_change):
                return
        write_text_atomic(self.out / SETTINGS_FILE, json.dumps(settings, indent=1, sort_keys=True))

    def clear(self) -> None:
        """Forget every result (``--no-resume``; rank 0 only, before the others start)."""
        for sub in (ROWS_DIR, FEATURES_DIR, STATS_DIR):
            shutil.rmtree(self.out / sub, ignore_errors=True)
        (self.out / SETTINGS_FILE).unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------------------- rows
    def rows(self) -> list[dict[str, Any]]:
        """Every whole row of every rank's file; the first one wins if a (key, setting) appears twice."""
        seen: set[tuple[str, str]] = set()
        out = []
        for path in sorted((self.out / ROWS_DIR).glob("rank-*.jsonl")):
            for row in _read_rows(path):
                k = (row["key"], row["setting"])
                if k not in seen:
                    seen.add(k)
                    out.append(row)
        return out

    def done(self) -> set[tuple[str, str]]:
        return {(r["key"], r["setting"]) for r in self.rows()}

    def append(self, row: dict[str, Any]) -> None:
        """Add one row to this rank's file, durably, as one write of one whole line."""
        self.rows_file.parent.mkdir(parents=True, exist_ok=True)
        if not self._tail_checked:
            _cut_torn_tail(self.rows_file)
            self._tail_checked = True
        line = (json.dumps(row, sort_keys=True, allow_nan=True) + "\n").encode()
        fd = os.open(self.rows_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------------------------------ features
    def feature_path(self, key: str, setting: str) -> Path:
        return self.out / FEATURES_DIR / setting / f"{slug(key)}.npz"

    def save_features(self, key: str, setting: str, feats: dict[str, np.ndarray]) -> None:
        with atomic_path(self.feature_path(key, setting)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in feats.items()})

    def load_features(self, key: str, setting: str) -> dict[str, np.ndarray]:
        path = self.feature_path(key, setting)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing although its row is written; delete the row's folder "
                                    f"{self.out} or run with --no-resume")
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    # ------------------------------------------------------------------------------------------- stats
    def stats_path(self, setting: str, kind: str, rank: int) -> Path:
        return self.out / STATS_DIR / f"{setting}-{kind}-rank-{rank:05d}-of-{self.world_size:05d}.npz"

    def save_rank_stats(self, setting: str, keys: Iterable[str], dims: dict[str, int]) -> dict[str, FeatureStats]:
        """This rank's FeatureStats of ``setting`` over the features of ``keys`` (its share, in plan order)."""
        stats = {kind: FeatureStats(dim) for kind, dim in dims.items()}
        for key in keys:
            feats = self.load_features(key, setting)
            for kind, st in stats.items():
                st.update(feats[kind])
        for kind, st in stats.items():
            path = self.stats_path(setting, kind, self.rank)
            with atomic_path(path) as tmp:
                st.save(tmp)                      # tmp keeps the .npz suffix, so numpy adds none
        return stats

    def merged_stats(self, setting: str, kinds: Iterable[str]) -> dict[str, FeatureStats]:
        """The ranks' statistics of ``setting`` merged in rank order (exact: Chan et al.'s parallel update)."""
        out = {}
        for kind in kinds:
            merged = None
            for r in range(self.world_size):
                path = self.stats_path(setting, kind, r)
                if not path.is_file():
                    raise FileNotFoundError(f"rank {r} wrote no statistics {path.name}: did it fail?")
                st = FeatureStats.load(path)
                merged = st if merged is None else merged.merge(st)
            out[kind] = merged
        return out


def _read_rows(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    out = []
    for line in data.split(b"\n")[:-1]:          # the part after the last newline is torn (or empty)
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _cut_torn_tail(path: Path) -> None:
    """Drop what follows the last newline (a line a kill interrupted)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
