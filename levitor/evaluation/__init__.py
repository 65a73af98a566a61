"""Evaluation: the paper's DAVIS protocol (CoTracker ground truth, ObjMC, FID, FVD) and its runner."""

from levitor._util.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "run_eval": ".runner", "EvalConfig": ".runner", "evaluate_clip": ".protocol", "objmc": ".metrics",
    "fid": ".metrics", "fvd": ".metrics",
})
__all__ = ["run_eval", "EvalConfig", "evaluate_clip", "objmc", "fid", "fvd"]
