"""ControlNetSVD and ControlledUNetSVD on tiny random models (real architectures, small widths)."""

import pytest
import torch
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionModel

from levitor.generation.svd_config import SVD_XT_UNET_CONFIG
from levitor.models import ControlledUNetSVD, ControlNetSVD
from levitor.testing.compare import assert_same_output
from levitor.testing.tiny import (
    TINY_CONDITIONING_WIDTHS,
    perturb_zero_convs,
    tiny_controlnet,
    tiny_unet,
)

B, F, H, W = 1, 4, 64, 64  # latents 8x8 (the tiny VAE downsamples by 8, like SVD's)

def _inputs(seed=0, batch=B):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, F, 8, H // 8, W // 8, generator=g)
    t = torch.tensor(12.5)
    context = torch.randn(batch, 1, 32, generator=g)
    added = torch.tensor([[5.0, 100.0, 0.02]] * batch)
    cond = torch.randint(0, 256, (batch, F, 3, H, W), generator=g).float()  # raw 0..255 values
    return sample, t, context, added, cond


@pytest.fixture(scope="module")
def unets():
    controlled = tiny_unet(seed=0)
    plain = UNetSpatioTemporalConditionModel.from_config(controlled.svd_config).eval()
    plain.load_state_dict(controlled.state_dict())
    return plain, controlled


@torch.no_grad()
def test_zero_init_controlnet_leaves_unet_output_unchanged(unets):
    plain, controlled = unets
    controlnet = tiny_controlnet(controlled, zero_init=True)
    sample, t, context, added, cond = _inputs()
    down, mid = controlnet(sample, t, context, cond, added, return_dict=False)
    assert all(torch.count_nonzero(r) == 0 for r in down) and torch.count_nonzero(mid) == 0

    expected = plain(sample, t, context, added).sample
    got = controlled(sample, t, context, added, down_block_additional_residuals=down,
                     mid_block_additional_residual=mid).sample
    # plain and controlled are two models with one state dict: equal up to float rounding (levitor.testing.compare)
    assert_same_output(got, expected)
    assert_same_output(controlled(sample, t, context, added).sample, expected)  # no residuals at all


@torch.no_grad()
def test_trained_controlnet_changes_output_and_scale_zero_restores_it(unets):
    plain, controlled = unets
    controlnet = perturb_zero_convs(tiny_controlnet(controlled, zero_init=True))
    sample, t, context, added, cond = _inputs()
    expected = plain(sample, t, context, added).sample

    down, mid = controlnet(sample, t, context, cond, added, return_dict=False)
    got = controlled(sample, t, context, added, down_block_additional_residuals=down,
                     mid_block_additional_residual=mid).sample
    assert (got - expected).abs().max() > 1e-3

    other = controlnet(sample, t, context, torch.zeros_like(cond), added, return_dict=False)
    got_other = controlled(sample, t, context, added, down_block_additional_residuals=other[0],
                           mid_block_additional_residual=other[1]).sample
    assert (got - got_other).abs().max() > 1e-4  # the control itself matters, not only the zero convs

    down0, mid0 = controlnet(sample, t, context, cond, added, conditioning_scale=0.0, return_dict=False)
    got0 = controlled(sample, t, context, added, down_block_additional_residuals=down0,
                      mid_block_additional_residual=mid0).sample
    assert_same_output(got0, expected)


@torch.no_grad()
def test_unet_conditioning_scale_scales_residuals(unets):
    _, controlled = unets
    controlnet = perturb_zero_convs(tiny_controlnet(controlled, zero_init=True))
    sample, t, context, added, cond = _inputs()
    down, mid = controlnet(sample, t, context, cond, added, return_dict=False)
    doubled = controlled(sample, t, context, added, [2 * r for r in down], 2 * mid).sample
    scaled = controlled(sample, t, context, added, down, mid, conditioning_scale=2.0).sample
    torch.testing.assert_close(scaled, doubled)


def test_from_unet_copies_encoder_and_zeroes_outputs(unets):
    _, controlled = unets
    controlnet = tiny_controlnet(controlled, zero_init=True)
    unet_sd = controlled.state_dict()
    for key, value in controlnet.state_dict().items():
        if key.startswith(("conv_in.", "time_embedding.", "add_embedding.", "down_blocks.", "mid_block.")):
            assert torch.equal(value, unet_sd[key]), key
        elif key.startswith(("controlnet_down_blocks.", "controlnet_mid_block.",
                             "controlnet_cond_embedding.conv_out.")):
            assert torch.count_nonzero(value) == 0, key
    # a fresh copy: training the ControlNet must not touch the UNet
    assert controlnet.conv_in.weight.data_ptr() != controlled.conv_in.weight.data_ptr()
    assert controlnet.config.conditioning_embedding_out_channels == TINY_CONDITIONING_WIDTHS


def test_state_dict_names_match_release_for_svd_xt():
    with torch.device("meta"):  # full SVD-xt size, no memory
        unet = UNetSpatioTemporalConditionModel(**SVD_XT_UNET_CONFIG)
        controlnet = ControlNetSVD.from_unet(unet, conditioning_channels=3, load_weights_from_unet=False)
    keys = set(controlnet.state_dict())
    assert {k.split(".")[1] for k in keys if k.startswith("controlnet_down_blocks.")} == {str(i) for i in range(12)}
    emb = {k for k in keys if k.startswith("controlnet_cond_embedding.")}
    assert emb == {f"controlnet_cond_embedding.{m}.{p}" for m in
                   ["conv_in", *[f"blocks.{i}" for i in range(6)], "conv_out"] for p in ("weight", "bias")}
    assert controlnet.controlnet_cond_embedding.conv_in.weight.shape == (16, 3, 3, 3)
    assert controlnet.controlnet_cond_embedding.conv_out.weight.shape == (320, 256, 3, 3)
    assert [controlnet.controlnet_cond_embedding.blocks[i].stride for i in range(6)] == [(1, 1), (2, 2)] * 3
    assert controlnet.controlnet_mid_block.weight.shape == (1280, 1280, 1, 1)
    top = {k.split(".")[0] for k in keys}
    assert top == {"conv_in", "time_embedding", "add_embedding", "down_blocks", "mid_block",
                   "controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding"}
    # the encoder's names are the UNet's, so from_unet's copy (and the release's) lines up key for key
    unet_keys = set(unet.state_dict())
    assert {k for k in keys if not k.startswith("controlnet_")} <= unet_keys
    assert controlnet.downsampling_factor == 8


@torch.no_grad()
def test_save_load_round_trip_keeps_weights_bit_exact_and_outputs_equal(tmp_path, unets):
    _, controlled = unets
    controlnet = perturb_zero_convs(tiny_controlnet(controlled, zero_init=True))
    controlnet.save_pretrained(tmp_path / "controlnet")
    controlled.save_pretrained(tmp_path / "unet")
    controlnet2 = ControlNetSVD.from_pretrained(tmp_path / "controlnet").eval()
    unet2 = ControlledUNetSVD.from_pretrained(tmp_path / "unet").eval()
    for a, b in [(controlnet, controlnet2), (controlled, unet2)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    def plain(config):  # json turns tuples into lists
        return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if not k.startswith("_")}

    assert plain(controlnet2.config) == plain(controlnet.config)

    sample, t, context, added, cond = _inputs()
    out1 = controlled(sample, t, context, added, *controlnet(sample, t, context, cond, added, return_dict=False))
    out2 = unet2(sample, t, context, added, *controlnet2(sample, t, context, cond, added, return_dict=False))
    assert_same_output(out2.sample, out1.sample)  # state dicts bit-equal above; outputs up to float rounding


def test_controlled_unet_loads_plain_svd_unet_weights(tmp_path, unets):
    plain, _ = unets
    plain.save_pretrained(tmp_path / "unet")  # _class_name UNetSpatioTemporalConditionModel, as on the hub
    loaded = ControlledUNetSVD.from_pretrained(tmp_path / "unet")
    assert isinstance(loaded, ControlledUNetSVD)
    sp, sl = plain.state_dict(), loaded.state_dict()
    assert sp.keys() == sl.keys() and all(torch.equal(sp[k], sl[k]) for k in sp)


@pytest.fixture
def trained_controlnet(unets):
    """A ControlNet whose zero convs are perturbed, as after training."""
    return perturb_zero_convs(tiny_controlnet(unets[1], zero_init=True))


def _same_residuals(a, b) -> bool:
    (down_a, mid_a), (down_b, mid_b) = a, b
    return all(torch.equal(x, y) for x, y in zip(down_a, down_b)) and torch.equal(mid_a, mid_b)


@torch.no_grad()
def test_controlnet_accepts_flat_or_5d_control_and_rejects_wrong_size(trained_controlnet):
    controlnet = trained_controlnet
    sample, t, context, added, cond = _inputs(batch=2)
    d5, m5 = controlnet(sample, t, context, cond, added, return_dict=False)
    flat = controlnet(sample, t, context, cond.flatten(0, 1), added, return_dict=False)
    assert _same_residuals((d5, m5), flat)
    assert len(d5) == 6 and d5[0].shape == (2 * F, 32, 8, 8)

    with pytest.raises(ValueError, match="controlnet_cond must be"):
        controlnet(sample, t, context, cond[..., :32, :32], added)
    with pytest.raises(ValueError, match="controlnet_cond must be"):
        controlnet(sample, t, context, cond[:, :2], added)  # frame count mismatch


@torch.no_grad()
def test_control_embedded_once_gives_the_same_residuals(trained_controlnet):
    """A sampler embeds the control once per video and passes the embedding to every step."""
    controlnet = trained_controlnet
    sample, t, context, added, cond = _inputs(batch=2)
    raw = controlnet(sample, t, context, cond, added, return_dict=False)
    embedding = controlnet.embed_condition(cond)
    assert embedding.shape == (2 * F, 32, 8, 8) and embedding.abs().sum() > 0
    assert _same_residuals(raw, controlnet(sample, t, context, None, added, return_dict=False,
                                           cond_embedding=embedding))

    # one embedding shared by two equal halves of the batch (CFG), added to each
    same = torch.cat([cond[:1], cond[:1]])
    d_full, m_full = controlnet(sample, t, context, same, added, return_dict=False)
    d_half, m_half = controlnet(sample, t, context, None, added, return_dict=False,
                                cond_embedding=controlnet.embed_condition(same[:1]))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(d_full, d_half)) and torch.allclose(m_full, m_half)

    with pytest.raises(ValueError, match="cond_embedding must be"):
        controlnet(sample, t, context, None, added, cond_embedding=embedding[:F - 1])  # not whole frames
    with pytest.raises(ValueError, match="cond_embedding must be"):
        controlnet(sample, t, context, None, added, cond_embedding=embedding[..., :4])
    with pytest.raises(ValueError, match="pass controlnet_cond"):
        controlnet(sample, t, context, None, added)
    with pytest.raises(ValueError, match="controlnet_cond must be"):
        controlnet.embed_condition(cond[:, :, :2])  # two channels, not three


@torch.no_grad()
def test_unet_rejects_wrong_residual_count(unets):
    _, controlled = unets
    controlnet = tiny_controlnet(controlled, zero_init=True)
    sample, t, context, added, cond = _inputs()
    down, mid = controlnet(sample, t, context, cond, added, return_dict=False)
    with pytest.raises(ValueError, match="down-block residuals"):
        controlled(sample, t, context, added, down[:-1], mid)


def test_controlnet_trains_only_itself(unets):
    _, controlled = unets
    controlnet = perturb_zero_convs(tiny_controlnet(controlled, zero_init=True)).train()
    controlled.requires_grad_(False)
    sample, t, context, added, cond = _inputs()
    down, mid = controlnet(sample, t, context, cond, added, return_dict=False)
    loss = controlled(sample, t, context, added, down, mid).sample.square().mean()
    loss.backward()
    assert controlnet.controlnet_cond_embedding.conv_in.weight.grad is not None
    assert controlnet.controlnet_cond_embedding.conv_in.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in controlled.parameters())
    controlnet.eval()


def test_gradient_checkpointing_gives_the_same_gradients(unets):
    _, controlled = unets
    controlled.requires_grad_(False)
    sample, t, context, added, cond = _inputs()
    grads = []
    for checkpointing in (False, True):
        controlnet = perturb_zero_convs(tiny_controlnet(controlled, zero_init=True)).train()
        if checkpointing:
            controlnet.enable_gradient_checkpointing()
        down, mid = controlnet(sample, t, context, cond, added, return_dict=False)
        controlled(sample, t, context, added, down, mid).sample.square().mean().backward()
        grads.append(controlnet.down_blocks[0].resnets[0].spatial_res_block.conv1.weight.grad.clone())
    assert controlnet.is_gradient_checkpointing
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("builder", ["svd_xt_architecture", "random_svd_xt_pipeline"])
def test_the_svd_xt_builders_build_the_real_architecture(builder):
    """``levitor vram``'s builder and the benchmarks' (random ControlNet outputs), on the meta device."""
    from levitor.generation import svd_config
    from levitor.testing import tiny

    pipe = getattr(svd_config if builder == "svd_xt_architecture" else tiny, builder)(device="meta")
    counts = {name: sum(p.numel() for p in getattr(pipe, name).parameters())
              for name in ("unet", "controlnet", "vae", "image_encoder")}
    assert counts == {"unet": 1_524_623_082, "controlnet": 682_021_537, "vae": 97_742_847,
                      "image_encoder": 632_076_800}
    assert pipe.vae_scale_factor == 8 and len(pipe.controlnet.controlnet_down_blocks) == 12
    # all of it on the device asked for (diffusers' AlphaBlender mix factors ignore the device context)
    assert {t.device.type for name in counts for t in [*getattr(pipe, name).parameters(),
                                                        *getattr(pipe, name).buffers()]} == {"meta"}


def test_dtype_casts_do_not_log_diffusers_empty_fp32_notice():
    """diffusers 0.42 warns on every cast that modules "should be kept in float32: []": noise on each generation
    (the VAE is upcast to encode), filtered when levitor is imported."""
    import logging

    import levitor  # noqa: F401  (installs the filter)

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("diffusers").addHandler(handler)
    try:
        unet = tiny_unet()
        unet.to(dtype=torch.float16)
        unet.to(dtype=torch.float32)
        logging.getLogger("diffusers.models.modeling_utils").warning("a real warning still shows")
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert [r.getMessage() for r in records] == ["a real warning still shows"]


def test_a_fresh_process_prints_neither_library_notice():
    """Whatever levitor module imports transformers first (here the pipeline, before levitor.models), neither the
    missing-torchvision notice nor diffusers' empty fp32 notice reaches the user."""
    import subprocess
    import sys

    code = ("import torch, levitor.generation.pipeline\n"
            "from levitor.testing.tiny import tiny_vae\n"
            "tiny_vae().to(dtype=torch.float16)\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "requires torchvision" not in err and "kept in float32" not in err, err



# ---------------------------------------------------------------- temporal context order (release vs diffusers)


def test_release_context_gives_row_r_the_context_of_video_r_mod_b():
    from levitor.models.temporal_order import release_context

    for batch, positions in [(2, 3), (2, 4), (3, 5)]:
        per_video = torch.arange(batch, dtype=torch.float32)[:, None, None].expand(batch, 1, 4)  # video b's = b
        diffusers_rows = per_video.repeat_interleave(positions, dim=0)  # diffusers: row b * P + p holds video b
        got = release_context(diffusers_rows, batch)[:, 0, 0]
        assert got.tolist() == [float(r % batch) for r in range(batch * positions)]
    one = torch.randn(6, 1, 4)
    assert release_context(one, 1) is one


def _order_copies(model):
    import copy

    release = copy.deepcopy(model)
    release.set_temporal_context_order("release")
    return model, release


@torch.no_grad()
def test_release_order_changes_cfg_batched_unet_and_controlnet_but_not_batch_one(unets):
    _, controlled = unets
    controlnet = perturb_zero_convs(tiny_controlnet(controlled, zero_init=True))
    sample, t, context, added, cond = _inputs(batch=2)
    context[0] = 0.0  # CFG: the unconditional branch has a zero image embedding, the conditional one the image's
    cond[0] = cond[1]  # the same control in both halves (as the pipeline makes it)
    one = (sample[1:], t, context[1:], added[1:], cond[1:])  # the conditional branch alone

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    for diffusers_m, release_m in [_order_copies(controlled), _order_copies(controlnet)]:
        assert release_m.config.temporal_context_order == "release"
        if isinstance(diffusers_m, ControlNetSVD):
            def run(m, s, tt, c, a, cc):
                return m(s, tt, c, cc, a, return_dict=False)[1]  # the mid-block residual
        else:
            def run(m, s, tt, c, a, cc):
                return m(s, tt, c, a).sample
        # batch 1: the two orders are the same computation
        assert torch.equal(run(diffusers_m, *one), run(release_m, *one))
        batched_d = run(diffusers_m, sample, t, context, added, cond)
        batched_r = run(release_m, sample, t, context, added, cond)
        half = batched_d.shape[0] // 2
        # diffusers' order: the conditional half of the CFG batch is the batch-1 run (up to float rounding; a batch
        # of 2 takes other kernel paths than a batch of 1, hence 1e-4: the release order moves outputs by > 1e-2)
        assert_same_output(batched_d[half:], run(diffusers_m, *one), rtol=1e-4, atol=1e-5)
        # the release's: half of each branch's positions see the other branch's context
        assert rel(batched_r[half:], run(release_m, *one)) > 1e-2
        assert rel(batched_r, batched_d) > 1e-2
        # with one context for both branches, the order cannot matter
        same = context[1:].expand_as(context).clone()
        assert_same_output(run(release_m, sample, t, same, added, cond), run(diffusers_m, sample, t, same, added, cond),
                           rtol=1e-4, atol=1e-5)


def test_temporal_context_order_is_saved_and_checked(tmp_path, unets):
    _, controlled = unets
    unet = tiny_unet(seed=0)
    unet.set_temporal_context_order("release")
    controlnet = ControlNetSVD.from_unet(unet, conditioning_embedding_out_channels=TINY_CONDITIONING_WIDTHS)
    assert controlnet.config.temporal_context_order == "release"  # from_unet takes the UNet's order
    unet.save_pretrained(tmp_path / "unet")
    controlnet.save_pretrained(tmp_path / "controlnet")
    assert ControlledUNetSVD.from_pretrained(tmp_path / "unet").config.temporal_context_order == "release"
    loaded = ControlNetSVD.from_pretrained(tmp_path / "controlnet")
    assert loaded.config.temporal_context_order == "release" and len(loaded._order_hooks) > 0
    assert controlled.config.temporal_context_order == "diffusers" and controlled._order_hooks == []
    with pytest.raises(ValueError, match="temporal_context_order must be one of"):
        unet.set_temporal_context_order("stability")
    # the plain diffusers UNet takes the config without levitor's key
    assert "temporal_context_order" not in controlled.svd_config
    assert set(controlled.svd_config) == set(UNetSpatioTemporalConditionModel.from_config(controlled.svd_config).config)
