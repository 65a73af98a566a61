"""The models a training run starts from (pretrained SVD or the mini model)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from levitor.generation import mini
from levitor.generation.model_choice import mini_info
from levitor.generation.pipeline import LeviTorPipeline
from levitor.models.controlnet_svd import ControlNetSVD
from levitor.models.convert import load_controlnet
from levitor.models.unet_svd import ControlledUNetSVD
from levitor.training.config import TrainConfig


def build_models(config: TrainConfig) -> LeviTorPipeline:
    """The pipeline whose models the config's run starts from (vae, image_encoder, unet, controlnet, scheduler,
    feature_extractor)."""
    return build_mini(config) if config.model == "mini" else build_svd(config)


def build_mini(config: TrainConfig) -> LeviTorPipeline:
    """The mini model: from scratch, or fine-tuned from exported weights (``init_from``)."""
    unet_config = mini.mini_unet_config(
        num_frames=config.num_frames, patch_size=config.mini_patch_size, channels=config.mini_channels,
        layers_per_block=config.mini_layers_per_block, heads=(2,) * len(config.mini_channels),
        sample_size=config.height // config.mini_patch_size)
    vae, image_encoder, unet, controlnet = mini.build_mini_models(unet_config, config.mini_patch_size, config.seed)
    if config.init_from:  # fine-tune an exported model: all three trained parts come from there
        init = Path(config.init_from)
        unet = mini.ControlledUNetSVD.from_pretrained(init / "unet")
        controlnet = mini.MiniControlNetSVD.from_pretrained(init / "controlnet")
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(init / "image_encoder")
    if config.controlnet_init:
        controlnet = mini.MiniControlNetSVD.from_pretrained(config.controlnet_init)
    if config.init_from and mini_info(config.init_from).get("prediction_type", "v_prediction") \
            != config.mini_prediction:
        # v-prediction's denoised estimate at high noise is -output; x0-prediction's is +output: flip the
        # last convolution so the fine-tune starts close to what the parent model did
        with torch.no_grad():
            unet.conv_out.weight.neg_()
            unet.conv_out.bias.neg_()
    if config.mini_prediction == "sample":  # the same weights behind the x0-predicting forward
        unet.__class__ = mini.MiniX0UNetSVD
    scheduler = mini.mini_scheduler(config.mini_sigma_max, config.mini_sigma_min)
    return mini.make_pipeline(vae, image_encoder, unet, controlnet, scheduler)


def build_svd(config: TrainConfig) -> LeviTorPipeline:
    """Pretrained SVD (``pretrained``: a hub id or a diffusers folder) and a ControlNet copied from its UNet's
    encoder, or loaded from ``controlnet_init``."""
    unet = ControlledUNetSVD.from_pretrained(config.pretrained, subfolder="unet")
    if config.controlnet_init:
        controlnet = load_controlnet(config.controlnet_init)
        # from here on the weights learn levitor's control (training data is built by levitor's rules); a released
        # ControlNet keeps its temporal context order, which the UNet beside it follows
        controlnet.register_to_config(control_rules="levitor")
    else:
        controlnet = ControlNetSVD.from_unet(unet, conditioning_channels=3)
    pipe = LeviTorPipeline(
        vae=AutoencoderKLTemporalDecoder.from_pretrained(config.pretrained, subfolder="vae"),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(config.pretrained, subfolder="image_encoder"),
        unet=unet, controlnet=controlnet,
        scheduler=EulerDiscreteScheduler.from_pretrained(config.pretrained, subfolder="scheduler"),
        feature_extractor=CLIPImageProcessor.from_pretrained(config.pretrained, subfolder="feature_extractor"),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
