"""Tiny random DepthAnything and SAM models, saved like real checkpoints, for tests and benchmarks.

These models have **random weights**. They exist so tests can run the real loading and inference code paths
(``from_pretrained`` on a folder, preprocessing, the predictor pattern, caching) in a fraction of a second on a
CPU. Their depth maps and masks mean nothing; never show them to a user as a model's output.

``random_sam_model(arch)`` builds the *real* ViT-B/L/H SAM architecture with random weights, for timing only.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Public SAM encoder sizes (hidden size, depth, heads, global-attention blocks); the rest is shared.
SAM_ARCHS: dict[str, dict] = {
    "vit_b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11]),
    "vit_l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, global_attn_indexes=[5, 11, 17, 23]),
    "vit_h": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31]),
}


def tiny_depth_anything_config():
    """A 0.3M-parameter DepthAnythingV2-style config (ENVIRONMENT_NOTES §4): inputs must be multiples of 14."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        image_size=518, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, out_features=["stage1", "stage2", "stage3", "stage4"], reshape_hidden_states=False,
    )
    return DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, patch_size=14, neck_hidden_sizes=[16, 32, 32, 32],
        fusion_hidden_size=32, head_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5],
        depth_estimation_type="relative",
    )


def save_tiny_depth_anything(path: str | os.PathLike, seed: int = 0) -> Path:
    """Build a tiny random ``DepthAnythingForDepthEstimation`` and save it (with its image processor) to ``path``."""
    from transformers import DepthAnythingForDepthEstimation, DPTImageProcessorPil

    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(tiny_depth_anything_config()).eval()
    path = Path(path)
    model.save_pretrained(path)
    DPTImageProcessorPil(
        size={"height": 126, "width": 126}, keep_aspect_ratio=True, ensure_multiple_of=14, do_pad=False,
    ).save_pretrained(path)
    return path


def tiny_sam_config(image_size: int = 128, hq: bool = False):
    """A ~0.1M-parameter SAM (or SAM-HQ) config whose encoder takes ``image_size`` px and yields 256/64 = 4x
    smaller low-res masks than its input, like the real model (1024 px in, 256 px masks out)."""
    if hq:
        from transformers import SamHQConfig as Config
        from transformers import SamHQMaskDecoderConfig as DecoderConfig
        from transformers import SamHQPromptEncoderConfig as PromptConfig
        from transformers import SamHQVisionConfig as VisionConfig
    else:
        from transformers import SamConfig as Config
        from transformers import SamMaskDecoderConfig as DecoderConfig
        from transformers import SamPromptEncoderConfig as PromptConfig
        from transformers import SamVisionConfig as VisionConfig

    vision = VisionConfig(
        hidden_size=32, output_channels=32, num_hidden_layers=2, num_attention_heads=2, image_size=image_size,
        patch_size=16, mlp_dim=64, global_attn_indexes=[1], window_size=4, num_pos_feats=16,
    )
    prompt = PromptConfig(hidden_size=32, image_size=image_size, patch_size=16, mask_input_channels=4)
    decoder_kwargs = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32
    )
    if hq:
        decoder_kwargs["vit_dim"] = 32
    decoder = DecoderConfig(**decoder_kwargs)
    return Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def save_tiny_sam(path: str | os.PathLike, seed: int = 0, image_size: int = 128, hq: bool = False) -> Path:
    """Build a tiny random ``SamModel`` (``SamHQModel`` with ``hq``) and save it with its processor to ``path``."""
    from transformers import SamHQModel, SamImageProcessorPil, SamModel

    torch.manual_seed(seed)
    model = (SamHQModel if hq else SamModel)(tiny_sam_config(image_size, hq)).eval()
    path = Path(path)
    model.save_pretrained(path)
    low_res = image_size // 4
    SamImageProcessorPil(
        size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": low_res}, mask_pad_size={"height": low_res, "width": low_res},
    ).save_pretrained(path)
    return path


def random_sam_model(arch: str = "vit_b", seed: int = 0):
    """The real SAM architecture ``arch`` (vit_b, vit_l, vit_h) at 1024 px with random weights: for timing only."""
    from transformers import SamConfig, SamModel, SamVisionConfig

    if arch not in SAM_ARCHS:
        raise ValueError(f"arch must be one of {sorted(SAM_ARCHS)}, got {arch!r}")
    torch.manual_seed(seed)
    return SamModel(SamConfig(vision_config=SamVisionConfig(**SAM_ARCHS[arch]))).eval()


def random_depth_anything_model(size: str = "small", seed: int = 0):
    """The real DepthAnythingV2 ``size`` (small, base, large) architecture with random weights: for timing only."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    # (hidden, layers, heads, neck sizes, fusion size, backbone stages) of the public V2 checkpoints
    archs = {
        "small": (384, 12, 6, [48, 96, 192, 384], 64, [3, 6, 9, 12]),
        "base": (768, 12, 12, [96, 192, 384, 768], 128, [3, 6, 9, 12]),
        "large": (1024, 24, 16, [256, 512, 1024, 1024], 256, [5, 12, 18, 24]),
    }
    if size not in archs:
        raise ValueError(f"size must be one of {sorted(archs)}, got {size!r}")
    hidden, layers, heads, neck, fusion, stages = archs[size]
    torch.manual_seed(seed)
    backbone = Dinov2Config(
        image_size=518, patch_size=14, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        out_indices=stages, reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=hidden, neck_hidden_sizes=neck, fusion_hidden_size=fusion,
        depth_estimation_type="relative",
    )
    return DepthAnythingForDepthEstimation(config).eval()
