"""The models a training run starts from (pretrained SVD, the mini model, or tiny random ones)."""

from __future__ import annotations

from pathlib import Path

from levitor.training.config import TrainConfig


def build_models(config: TrainConfig):
    """(vae, image_encoder, unet, controlnet, scheduler, feature_extractor) for the config's model."""
    if config.model == "mini":
        from levitor.generation import mini

        unet_config = mini.mini_unet_config(
            num_frames=config.num_frames, patch_size=config.mini_patch_size, channels=config.mini_channels,
            layers_per_block=config.mini_layers_per_block, heads=(2,) * len(config.mini_channels),
            sample_size=config.height // config.mini_patch_size)
        vae, image_encoder, unet, controlnet = mini.build_mini_models(unet_config, config.mini_patch_size,
                                                                      config.seed)
        if config.init_from:  # fine-tune an exported model: all three trained parts come from there
            from transformers import CLIPVisionModelWithProjection

            init = Path(config.init_from)
            unet = mini.ControlledUNetSVD.from_pretrained(init / "unet")
            controlnet = mini.MiniControlNetSVD.from_pretrained(init / "controlnet")
            image_encoder = CLIPVisionModelWithProjection.from_pretrained(init / "image_encoder")
        if config.controlnet_init:
            controlnet = mini.MiniControlNetSVD.from_pretrained(config.controlnet_init)
        scheduler = mini.mini_scheduler(config.mini_sigma_max, config.mini_sigma_min)
        return mini.make_pipeline(vae, image_encoder, unet, controlnet, scheduler)
    if config.model == "tiny":
        from levitor.testing import tiny

        return tiny.tiny_pipeline(config.seed, zero_init_controlnet=True)

    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from levitor.generation.pipeline import LeviTorPipeline
    from levitor.models.controlnet_svd import ControlNetSVD
    from levitor.models.unet_svd import ControlledUNetSVD

    unet = ControlledUNetSVD.from_pretrained(config.pretrained, subfolder="unet")
    if config.controlnet_init:
        from levitor.models.convert import load_controlnet

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
