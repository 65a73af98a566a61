"""The Ray Data engine of ``levitor precompute``: the stages of :mod:`levitor.training.precompute` as a streaming
pipeline over the videos of the unfinished shards.

    videos --map(read_video, CPU)--> clips at the training size --map_batches(depth, 1 GPU per actor)-->
           --map(encode_video, CPU)--> samples --driver: ShardWriter--> shards/*.tar

Ray Data runs the stages concurrently with bounded queues between them (its streaming executor's back-pressure:
a slow GPU stage stops the readers before the object store fills), retries tasks whose worker died (``max_retries``)
and restarts dead depth actors; a corrupt video is not a fault to retry: the read stage records it and the shard's
stats count it. The driver (this process) only spools finished videos and writes shards, so its work is small.

Where it runs: without ``address`` a Ray started here (local mode: ``levitor precompute`` just works on one machine,
using its CPUs and GPUs); with ``address="auto"`` (or ``ray://host:10001``) an existing cluster, e.g. one started by
``ray start --head`` / ``ray start --address=...`` on each node, or by the SLURM script in docs/data_and_eval.md.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from levitor.training.precompute import (
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

TASK_RETRIES = 3              # a task whose worker process died is run again this often
ACTOR_RESTARTS = 2            # a depth actor that died (GPU error, OOM) is restarted this often
RAY_SHIM_ENV = "LEVITOR_RAY_FAST_START"


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


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Connect to Ray (``address``) or start a local one; False when this process was already connected."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    env_before = os.environ.get("PYTHONPATH")
    if os.environ.get(RAY_SHIM_ENV, "1") != "0" and importlib.util.find_spec("rfc3987_syntax") is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_shim_dir(), env_before) if p)
    try:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before
    return True


# ----------------------------------------------------------------------------------------- row functions
def _read_row(row: dict[str, Any], root: str, config: dict[str, Any]) -> dict[str, Any]:
    plan = Plan(PrecomputeConfig.from_json(config), {}, {row["video"]: row["locator"]})
    return {"video": row["video"], "payload": pickle.dumps(read_video(root, plan, row["video"]), protocol=4)}


def _simple_depth_row(row: dict[str, Any], spec: str) -> dict[str, Any]:
    from levitor.perception.depth_fn import load_depth_fn

    result = add_depth(pickle.loads(row["payload"]), load_depth_fn(spec))
    return {"video": row["video"], "payload": pickle.dumps(result, protocol=4)}


class DepthActor:
    """DepthAnythingV2 loaded once per actor (one GPU each), run on every frame of a video at once (fp16)."""

    def __init__(self, spec: str, input_size: int, device: str) -> None:
        from levitor._util.device import resolve_device
        from levitor.perception.depth_fn import load_depth_fn

        self.depth_fn = load_depth_fn(spec, str(resolve_device(device)), input_size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        payloads = [pickle.dumps(add_depth(pickle.loads(p), self.depth_fn), protocol=4) for p in batch["payload"]]
        return {"video": list(batch["video"]), "payload": payloads}


def _encode_row(row: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    result = encode_video(pickle.loads(row["payload"]), PrecomputeConfig.from_json(config))
    return {"video": row["video"], "payload": pickle.dumps(result, protocol=4)}


# ------------------------------------------------------------------------------------------------ the run
def run_ray(root: str | Path, out: str | Path, config: PrecomputeConfig | None = None, address: str | None = None,
            num_cpus: int | None = None, num_gpus: int | None = None, device: str = "auto") -> RunReport:
    """Precompute the unfinished shards with Ray Data; the output is byte-identical to the local engine's."""
    import ray
    import ray.data

    config = config or PrecomputeConfig()
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
        ds = ds.map(_read_row, fn_kwargs={"root": str(root), "config": cfg}, num_cpus=1, max_retries=TASK_RETRIES)
        if config.depth in ("none", "flat") or config.depth.startswith("const:"):
            ds = ds.map(_simple_depth_row, fn_kwargs={"spec": config.depth}, num_cpus=1, max_retries=TASK_RETRIES)
        else:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            ds = ds.map_batches(DepthActor, fn_constructor_kwargs={"spec": config.depth, "input_size":
                                                                   config.depth_input_size, "device": device},
                                batch_size=1, concurrency=max(1, gpus), num_gpus=1 if gpus else 0,
                                max_restarts=ACTOR_RESTARTS, max_task_retries=TASK_RETRIES)
        ds = ds.map(_encode_row, fn_kwargs={"config": cfg}, num_cpus=1, max_retries=TASK_RETRIES)
        seen = 0
        for row in ds.iter_rows():
            writer.add(pickle.loads(row["payload"]))
            seen += 1
            writer.check_fail_fast(seen)
    finally:
        if started:
            ray.shutdown()
    return finish_report(out, writer.report, t0, "ray")
