"""Device names, resolved in one place: ``"auto"`` (the GPU of this process's local rank when torch sees one,
else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``; anything this torch cannot use is refused with
a message that names what it can use."""

from __future__ import annotations

import os

import torch

AUTO = "auto"


def available_devices() -> list[str]:
    """What ``resolve_device`` accepts on this machine (for messages)."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def resolve_device(device: str | torch.device | None = AUTO) -> torch.device:
    """A torch.device this process can use. ``"auto"``/None: ``cuda:LOCAL_RANK`` (modulo the GPU count) when
    CUDA is available, else the CPU."""
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a device name; use one of {available_devices()}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but torch sees no CUDA GPU here; use one of "
                             f"{available_devices()} (cpu is slow) or a machine with a GPU (Colab: Runtime > "
                             "Change runtime type > GPU)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s); use one of "
                             f"{available_devices()}")
    elif dev.type == "mps":
        if "mps" not in available_devices():
            raise ValueError(f"device 'mps' is not available in this torch build; use one of {available_devices()}")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r} is not supported by levitor; use one of {available_devices()}")
    return dev
