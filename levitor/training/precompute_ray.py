"""The Ray Data engine of ``levitor precompute``: the stages of :mod:`levitor.training.precompute` as a streaming
pipeline over the videos of the unfinished shards.

    videos --map(read_video, CPU)--> clips at the training size --map_batches(depth, 1 GPU per actor)-->
           --map(encode_video, CPU)--> samples --driver: ShardWriter--> shards/*.tar

Ray Data runs the stages concurrently with bounded queues between them (its streaming executor's back-pressure:
a slow GPU stage stops the readers before the object store fills), runs again a task whose worker died and restarts
a dead depth actor (Ray Data's defaults for tasks and actor pools); a corrupt video is not a fault to retry: the read
stage records it and the shard's stats count it. The driver (this process) only spools finished videos and writes
shards, so its work is small. Rows travel between the stages in the spool format (:mod:`levitor.training.spool`).

An error raised by a stage (a bad ``--depth``, missing weights) is not retried either: the stage returns it as a row
and the driver raises it again as the same kind of error with the same message, so the command says it in one line
exactly as the local engine does (a Ray task error would be a page of Ray's traceback). Settings that can be checked
before Ray starts are checked first.

Where it runs: without ``address`` a Ray started here (one machine's CPUs and GPUs: worth it with several GPUs,
:func:`levitor.training.precompute.choose_engine`); with ``address="auto"`` (or ``ray://host:10001``) an existing
cluster, e.g. one started by ``ray start --head`` / ``ray start --address=...`` on each node, or by the SLURM script
in docs/data_and_eval.md.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from levitor._util.device import resolve_device
from levitor.perception.depth_fn import check_depth_spec, load_depth_fn
from levitor.training.precompute import (
    EngineError,
    Plan,
    PrecomputeConfig,
    RunReport,
    ShardWriter,
    add_depth,
    encode_video,
    finish_report,
    load_or_make_plan,
    read_video,
)
from levitor.training.spool import pack, unpack

log = logging.getLogger(__name__)

RAY_SHIM_ENV = "LEVITOR_RAY_FAST_START"
ERROR_KEY = "error"              # a stage's row that carries an exception instead of a payload
OBJECT_STORE_SHARE = 4           # under a virtual-memory limit (ulimit -v) the object store gets 1/4 of it
MIN_ADDRESS_SPACE = 2 * 1024**3  # below this limit a Ray worker (Python, torch, the store's mapping) cannot run


def _shim_dir() -> str:
    """A folder whose ``rfc3987_syntax`` fails to import, put first on the PYTHONPATH of the Ray processes this
    module starts. jsonschema (imported by every Ray process) builds that package's IRI grammar at import, 5-10 s on
    a busy 2-core machine, and Ray's raylet gives its agents 15 s to start; without the package jsonschema simply
    skips IRI format checks, which Ray never uses. Set LEVITOR_RAY_FAST_START=0 to start Ray untouched."""
    folder = Path(tempfile.gettempdir()) / "levitor-ray-shim" / "rfc3987_syntax"
    if not (folder / "__init__.py").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text('raise ImportError("skipped in levitor\'s Ray processes")\n')
    return str(folder.parent)


def object_store_bytes(limit: int | None = None) -> int | None:
    """The object store size to ask a local Ray for: None (Ray's default, 30% of memory) without an address-space
    limit. With one (``ulimit -v``) every Ray process maps the whole store, and with the default the raylet dies at
    the first object with a C++ stack dump; a quarter of the limit leaves room for the rest of each process
    (measured: Ray Data runs under 4 and 10 GiB limits this way)."""
    if limit is None:
        try:
            import resource
        except ImportError:       # not a POSIX system: no such limit
            return None
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
    if limit < 0:
        return None
    if limit < MIN_ADDRESS_SPACE:
        raise EngineError(f"this process may map only {limit / 1024**3:.1f} GiB (ulimit -v), too little for a Ray "
                          f"worker (at least {MIN_ADDRESS_SPACE // 1024**3} GiB): run with --engine local, or raise "
                          "the limit")
    return int(limit // OBJECT_STORE_SHARE)


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Connect to Ray (``address``) or start a local one; False when this process was already connected. Raises
    :class:`~levitor.training.precompute.EngineError` (one line, suggesting the local engine) when it cannot."""
    import ray

    if ray.is_initialized():
        return False
    env_before = os.environ.get("PYTHONPATH")
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
            return True
        store = object_store_bytes()
        if store is not None:
            log.info("a virtual-memory limit is set: Ray's object store gets %.1f GiB", store / 1024**3)
        if os.environ.get(RAY_SHIM_ENV, "1") != "0" and importlib.util.find_spec("rfc3987_syntax") is not None:
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_shim_dir(), env_before) if p)
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=store, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    except EngineError:
        raise
    except Exception as err:  # Ray raises many kinds (ConnectionError, RuntimeError, TimeoutError...)
        where = f"reach the Ray cluster at {address}" if address else "start Ray on this machine"
        first = " ".join(str(err).split())[:300] or type(err).__name__
        raise EngineError(f"could not {where} ({type(err).__name__}: {first}); run with --engine local (one "
                          "process, no Ray) instead") from err
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before
    return True


# ----------------------------------------------------------------------------------------- row functions
def _error_row(video: str, err: BaseException) -> dict[str, Any]:
    """An exception as data: its family (how the driver raises it again), type name, message and traceback."""
    family = next((name for name, cls in _FAMILIES.items() if isinstance(err, cls)), "other")
    return {"video": video, ERROR_KEY: pack({"family": family, "type": type(err).__name__, "message": str(err),
                                             "traceback": traceback.format_exc()}), "payload": b""}


_FAMILIES: dict[str, type[BaseException]] = {"value": ValueError, "os": OSError, "import": ImportError}


def raise_stage_error(data: bytes) -> None:
    """Raise the error a stage returned (:func:`_error_row`) in this process: a ValueError, OSError or ImportError
    with the stage's message (what the local engine would have said), or a RuntimeError with the stage's traceback
    for anything else (a bug, shown as the local engine would show it)."""
    err = unpack(data)
    if err["family"] in _FAMILIES:
        raise _FAMILIES[err["family"]](err["message"])
    raise RuntimeError(f"a precompute stage failed in a Ray worker: {err['type']}: {err['message']}\n"
                       f"{err['traceback']}")


def _guarded(stage: Callable[[dict[str, Any]], dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    """Run ``stage`` on a row; an earlier stage's error row passes through, a new error becomes one."""
    if row.get(ERROR_KEY):
        return row
    try:
        return {"video": row["video"], ERROR_KEY: b"", "payload": pack(stage(row))}
    except Exception as err:  # any error goes back to the driver, as in the local engine
        return _error_row(row["video"], err)


def _read_row(row: dict[str, Any], root: str, config: dict[str, Any]) -> dict[str, Any]:
    plan = Plan(PrecomputeConfig.from_json(config), {}, {row["video"]: row["locator"]})
    return _guarded(lambda r: read_video(root, plan, r["video"]), row)


def _simple_depth_row(row: dict[str, Any], spec: str) -> dict[str, Any]:
    return _guarded(lambda r: add_depth(unpack(r["payload"]), load_depth_fn(spec)), row)


class DepthActor:
    """DepthAnythingV2 loaded once per actor (one GPU each), run on every frame of a video at once (fp16)."""

    def __init__(self, spec: str, input_size: int, device: str) -> None:
        self.spec, self.input_size, self.device = spec, input_size, device
        self.depth_fn = None

    def _load(self):
        if self.depth_fn is None:   # loaded on the first batch, so a loading error is a row like any other
            self.depth_fn = load_depth_fn(self.spec, str(resolve_device(self.device)), self.input_size)
        return self.depth_fn

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = [_guarded(lambda r: add_depth(unpack(r["payload"]), self._load()),
                         {"video": v, ERROR_KEY: e, "payload": p})
                for v, e, p in zip(batch["video"], batch[ERROR_KEY], batch["payload"])]
        return {k: [r[k] for r in rows] for k in ("video", ERROR_KEY, "payload")}


def _encode_row(row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    return _guarded(lambda r: encode_video(unpack(r["payload"]), PrecomputeConfig.from_json(config)), row)


# ------------------------------------------------------------------------------------------------ the run
def run_ray(root: str | Path, out: str | Path, config: PrecomputeConfig | None = None, address: str | None = None,
            num_cpus: int | None = None, num_gpus: int | None = None, device: str = "auto") -> RunReport:
    """Precompute the unfinished shards with Ray Data. The output is byte-identical to the local engine's with flat
    or constant depth; a depth network's maps also depend on the device and, on a CPU, on the torch thread count
    (Ray's workers run one thread each: the local engine with ``--threads 1`` matches them)."""

    config = config or PrecomputeConfig()
    check_depth_spec(config.depth)        # a bad --depth is one line before Ray starts, as in the local engine
    import ray
    import ray.data

    out = Path(out)
    t0 = time.perf_counter()
    plan = load_or_make_plan(root, out, config)
    writer = ShardWriter(out, plan)
    todo = writer.prepare(sorted(plan.shards))
    rows = [{"video": v, "locator": plan.videos[v]} for s in todo for v in writer.videos_todo(s)]
    if not rows:
        return finish_report(out, writer.report, t0, "ray")
    started = start_ray(address, num_cpus, num_gpus)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = False        # shards are assembled in plan order anyway
        ctx.enable_progress_bars = False
        cfg = config.to_json()
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 1000)))
        ds = ds.map(_read_row, fn_kwargs={"root": str(root), "config": cfg}, num_cpus=1)
        if config.depth in ("none", "flat") or config.depth.startswith("const:"):
            ds = ds.map(_simple_depth_row, fn_kwargs={"spec": config.depth}, num_cpus=1)
        else:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            ds = ds.map_batches(DepthActor, fn_constructor_kwargs={"spec": config.depth, "input_size":
                                                                   config.depth_input_size, "device": device},
                                batch_size=1, compute=ray.data.ActorPoolStrategy(size=max(1, gpus)),
                                num_gpus=1 if gpus else 0)
        ds = ds.map(_encode_row, fn_kwargs={"config": cfg}, num_cpus=1)
        seen = 0
        for row in ds.iter_rows():
            if row[ERROR_KEY]:
                raise_stage_error(row[ERROR_KEY])
            writer.add(unpack(row["payload"]))
            seen += 1
            writer.check_fail_fast(seen)
    finally:
        if started:
            ray.shutdown()
    return finish_report(out, writer.report, t0, "ray")
