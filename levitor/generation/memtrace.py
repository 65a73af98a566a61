"""Predict a generation's peak GPU memory without a GPU: run the real pipeline on the meta device, count bytes.

Meta tensors have shapes and dtypes but no data, so the full SVD-xt pipeline at 25x576x1024 runs in seconds on a
laptop, through the same code as on the GPU. While it runs, a dispatch mode counts every tensor an op makes, from
its creation until its storage is freed; weights count while their model would be on the GPU: always, or under
model CPU offload as accelerate's hooks move them (replayed from the pipeline's own offload chain).

What the figure is: the bytes of live tensors at the worst moment, comparable with
``torch.cuda.max_memory_allocated``. Attention is counted as a fused kernel (output only), which is what PyTorch's
flash and memory-efficient SDPA kernels allocate on CUDA in fp16. Not counted: the CUDA context (about 0.3-0.5
GB, outside the allocator), kernel workspaces, and the caching allocator's slack (``max_memory_reserved`` is
typically 5-20% above ``max_memory_allocated``). A prediction, not a measurement: ``bench/bench_pipeline.py``
measures on a GPU.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from levitor.defaults import DEFAULT_SIZE
from levitor.generation.guidance import DEFAULT_GUIDANCE, uses_controlnet, uses_ttm
from levitor.generation.presets import PRESET_NAMES

GB = 1e9


@dataclass
class MemoryTrace:
    """Peak bytes of a traced run, overall and per model (the model called last when the bytes were live)."""

    peak_bytes: int = 0
    peak_weights_bytes: int = 0        # weights on the device at the overall peak
    peak_during: str = ""              # the model called last at the overall peak
    by_model: dict[str, int] = field(default_factory=dict)  # peak bytes while each model ran

    def summary(self) -> str:
        parts = ", ".join(f"{name} {b / GB:.2f}" for name, b in self.by_model.items())
        return (f"peak {self.peak_bytes / GB:.2f} GB during {self.peak_during} (weights "
                f"{self.peak_weights_bytes / GB:.2f} GB); per model: {parts}")


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of live storages on one device that ops create while the mode is active.

    Views share their base's storage and count once; a storage stops counting when Python frees it.
    ``resident_weights`` gives the weight bytes to add at each moment (weights made before the trace are not
    seen by the mode).
    """

    def __init__(self, device_type: str = "meta", resident_weights: Callable[[], int] = lambda: 0):
        super().__init__()
        self.device_type = device_type
        self.resident_weights = resident_weights
        self.live = 0
        self.paused = False
        self.stage = "start"
        self.trace = MemoryTrace()
        self._seen: weakref.WeakSet = weakref.WeakSet()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == self.device_type:
                storage = t.untyped_storage()
                if self.paused:
                    self._seen.add(storage)  # e.g. a weight cast: the residency counts it
                else:
                    self._count(storage)
        return out

    def ignore(self, tensors) -> None:
        """Storages that exist already (weights): views of them, such as a transposed matrix, are not new."""
        for t in tensors:
            self._seen.add(t.untyped_storage())

    def _count(self, storage: torch.UntypedStorage) -> None:
        if storage in self._seen:
            return
        self._seen.add(storage)
        nbytes = storage.nbytes()
        self.live += nbytes
        weakref.finalize(storage, self._free, nbytes)
        self._sample()

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def _sample(self) -> None:
        weights = self.resident_weights()
        total = self.live + weights
        trace = self.trace
        trace.by_model[self.stage] = max(trace.by_model.get(self.stage, 0), total)
        if total > trace.peak_bytes:
            trace.peak_bytes, trace.peak_weights_bytes, trace.peak_during = total, weights, self.stage

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """What ops make inside is not counted, nor later (dtype casts of weights: the residency counts them)."""
        paused, self.paused = self.paused, True
        try:
            yield
        finally:
            self.paused = paused


def weight_bytes(model: torch.nn.Module) -> int:
    storages = {}
    for t in [*model.parameters(), *model.buffers()]:
        storages[id(t.untyped_storage())] = t.untyped_storage().nbytes()
    return sum(storages.values())


class Residency:
    """Which models' weights are on the GPU, following accelerate's model CPU offload as diffusers chains it.

    Calling a model puts it on the GPU and offloads the model chained before it (``model_cpu_offload_seq``);
    models outside the chain arrive at their first call and stay. Without offload, every model is resident.
    """

    def __init__(self, models: dict[str, torch.nn.Module], offload_chain: list[str] | None):
        self.models = models
        self.offload = offload_chain is not None
        chain = [name for name in (offload_chain or []) if name in models]
        self.chained_before = {name: chain[i - 1] if i else None for i, name in enumerate(chain)}
        self.on_gpu: set[str] = set() if self.offload else set(models)
        self.bytes = {name: weight_bytes(m) for name, m in models.items()}
        self.transfers: list[str] = []

    def called(self, name: str) -> None:
        self.bytes = {n: weight_bytes(m) for n, m in self.models.items()}  # a dtype cast changes them (VAE upcast)
        if not self.offload:
            return
        before = self.chained_before.get(name)
        if before in self.on_gpu:
            self.on_gpu.discard(before)
            self.transfers.append(f"{before} off")
        if name not in self.on_gpu:
            self.on_gpu.add(name)
            self.transfers.append(f"{name} on")

    def total(self) -> int:
        return sum(self.bytes[name] for name in self.on_gpu)


class _DiffusersHook:
    """Stands in for accelerate's hook where diffusers looks for one (``apply_forward_hook`` on VAE encode and
    decode call ``module._hf_hook.pre_forward``)."""

    def __init__(self, on_call: Callable[[], None]):
        self.on_call = on_call

    def pre_forward(self, module, *args, **kwargs):
        self.on_call()
        return args, kwargs


@contextlib.contextmanager
def trace_models(models: dict[str, torch.nn.Module], offload_chain: list[str] | None, device_type: str = "meta"
                 ) -> Iterator[tuple[LiveBytes, Residency]]:
    """Count live bytes on one device (the meta device: the stand-in for the GPU) while the body runs ``models``.

    offload_chain: None when every model stays on the GPU, else the pipeline's ``model_cpu_offload_seq`` order.
    """
    residency = Residency(models, offload_chain)
    mode = LiveBytes(device_type, residency.total)
    for model in models.values():
        mode.ignore([*model.parameters(), *model.buffers()])
    handles, hooked = [], []

    def on_call(name: str) -> Callable[[], None]:
        def call() -> None:
            residency.called(name)
            mode.stage = name
        return call

    for name, model in models.items():
        handles.append(model.register_forward_pre_hook(lambda module, args, call=on_call(name): call()))
        if not hasattr(model, "_hf_hook"):
            model._hf_hook = _DiffusersHook(on_call(name))
            hooked.append(model)

    apply = torch.nn.Module._apply

    def uncounted_apply(module, fn, *args, **kwargs):  # weight casts: the residency counts weights
        with mode.pause():
            return apply(module, fn, *args, **kwargs)

    torch.nn.Module._apply = uncounted_apply
    try:
        with mode:
            yield mode, residency
    finally:
        torch.nn.Module._apply = apply
        for handle in handles:
            handle.remove()
        for model in hooked:
            del model._hf_hook


def _fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    """What a fused SDPA kernel allocates: its output, never the (L x S) attention matrix."""
    return query.new_empty(*query.shape[:-1], value.shape[-1])


@contextlib.contextmanager
def fused_attention() -> Iterator[None]:
    """Count attention as CUDA's flash / memory-efficient kernels run it (meta would otherwise take the math path
    and materialise the attention matrix)."""
    functional = torch.nn.functional
    sdpa = functional.scaled_dot_product_attention
    functional.scaled_dot_product_attention = _fused_attention
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = sdpa


def predict_generation_memory(pipe, preset: str, num_frames: int, height: int, width: int,
                              num_inference_steps: int = 2, control=None, guidance: str = DEFAULT_GUIDANCE
                              ) -> tuple[MemoryTrace, list[str]]:
    """Peak GPU bytes of ``pipe(...)`` under ``preset``, traced with the pipeline's modules on the meta device.

    pipe: a LeviTorPipeline whose models are on the meta device (e.g. ``svd_xt_architecture("meta",
        torch.float16)``; the preset's dtype is applied here). Returns the trace and, under offload, the weight
        transfers it implies ("unet on", "controlnet off", ...).
    guidance: the mode traced; the TTM modes encode a reference video of ``num_frames`` frames with the VAE too.
        A pipeline without a ControlNet (``controlnet=None``) counts no ControlNet weights.
    Two steps suffice: every step allocates alike (TTM runs fewer steps of the same kind).
    """
    from levitor.generation.presets import PRESETS, set_forward_chunking

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    settings = PRESETS[preset]
    models = {name: m for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}
    if any(p.device.type != "meta" for m in models.values() for p in m.parameters()):
        raise ValueError("predict_generation_memory needs the pipeline's models on the meta device")
    for model in models.values():
        if model.dtype != settings.torch_dtype:
            model.to(dtype=settings.torch_dtype)
    for model in (pipe.unet, pipe.controlnet):
        if model is not None:
            set_forward_chunking(model, settings.forward_chunking)

    steering: dict = {"guidance": guidance}
    if uses_ttm(guidance):  # zeros: the values do not change the bytes
        steering.update(reference=np.zeros((num_frames, height, width, 3), np.uint8),
                        reference_mask=np.zeros((num_frames, height, width), bool))
    if not uses_controlnet(guidance):
        control = None
    elif control is None:
        from levitor.control.signal import ControlSignal

        k = 64  # a busy scene: 8 objects x 8 points
        control = ControlSignal(points=torch.rand(num_frames, k, 2) * torch.tensor([width, height]),
                                depth=torch.rand(num_frames, k) * 255, instance=torch.arange(k) // 8 + 1,
                                visible=torch.ones(num_frames, k, dtype=torch.bool), height=height, width=width)
    from PIL import Image

    image = Image.new("RGB", (width, height), (128, 128, 128))

    # the scheduler's few scalars stay on the CPU: finding the step index reads their values
    set_timesteps = pipe.scheduler.set_timesteps
    pipe.scheduler.set_timesteps = lambda n, device=None, **kw: set_timesteps(n, device="cpu", **kw)
    chain = pipe.model_cpu_offload_seq.split("->") if settings.cpu_offload else None
    try:
        with fused_attention(), trace_models(models, chain) as (mode, residency):
            frames = pipe(image, control=control, num_frames=num_frames, height=height, width=width,
                          num_inference_steps=num_inference_steps, decode_chunk_size=settings.decode_chunk_size,
                          output_type="pt", **steering).frames
            del frames
    finally:
        pipe.scheduler.set_timesteps = set_timesteps
    return mode.trace, residency.transfers


def predict_svd_xt_memory(num_frames: int = DEFAULT_SIZE.num_frames, height: int = DEFAULT_SIZE.height,
                          width: int = DEFAULT_SIZE.width, presets: tuple[str, ...] = PRESET_NAMES,
                          guidance: str = DEFAULT_GUIDANCE) -> dict[str, MemoryTrace]:
    """Peak GPU memory of a LeviTor (SVD-xt) generation under each preset, predicted without a GPU or weights.

    guidance: "ttm" traces SVD-xt without a ControlNet (as ``from_pretrained(controlnet=None)`` loads it), plus
    the reference video's VAE encode. About 4 s (default) and 10 s (low_vram) on a laptop CPU; nothing is
    allocated on a GPU.
    """
    from levitor.generation.svd_config import svd_xt_architecture

    pipe = svd_xt_architecture("meta", torch.float16)  # the architecture only: meta tensors hold no data
    if not uses_controlnet(guidance):
        pipe.register_modules(controlnet=None)
    return {preset: predict_generation_memory(pipe, preset, num_frames, height, width, guidance=guidance)[0]
            for preset in presets}


def recommend_preset(gpu_bytes: int, traces: dict[str, MemoryTrace], reserve_bytes: float = 1.0e9
                     ) -> tuple[str | None, str]:
    """The fastest preset whose predicted peak fits a GPU of ``gpu_bytes`` (``reserve_bytes`` kept for the CUDA
    context and the allocator's slack), and a sentence saying so. Presets are tried fastest first."""
    from levitor.generation.presets import PRESETS

    for name in [p for p in PRESETS if p in traces]:  # PRESETS lists the fastest first
        if traces[name].peak_bytes + reserve_bytes <= gpu_bytes:
            return name, (f"preset '{name}' should fit: it needs about {traces[name].peak_bytes / GB:.1f} GB of "
                          f"this GPU's {gpu_bytes / GB:.1f} GB")
    least = min(traces.values(), key=lambda t: t.peak_bytes)
    return None, (f"no preset is predicted to fit {gpu_bytes / GB:.1f} GB (the smallest needs "
                  f"{least.peak_bytes / GB:.1f} GB): use fewer frames or a smaller size")

