"""Generation: the LeviTor pipeline (SVD + ControlNet, or training-free TTM guidance), scene -> video with the files
written, the shipped mini model, and the GPU-memory prediction. Names are imported on first use (diffusers is slow to
import)."""

from levitor._util.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "LeviTorPipeline": ".pipeline", "PRESETS": ".presets", "generate": ".generate", "GenerateResult": ".generate",
    "load_pipeline": ".generate", "load_mini_pipeline": ".mini", "warped_reference": ".reference",
    "GUIDANCE_MODES": ".guidance",
})
__all__ = ["LeviTorPipeline", "PRESETS", "generate", "GenerateResult", "load_pipeline", "load_mini_pipeline",
           "warped_reference", "GUIDANCE_MODES"]
