"""Perception: depth, click-to-mask, automatic masks, caching, loading errors and the no-weights tools.

Models are tiny random DepthAnything / SAM configs saved to temp dirs and loaded back through the real
``from_pretrained`` paths; their outputs mean nothing, so tests check shapes, conventions, caching and that
prompts reach the model, while the automatic-mask logic is checked against a fake SAM with known masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from levitor.bundled import bundled_scene
from levitor.depth import depth_from_disparity
from levitor.perception import (
    AutoMaskConfig,
    AutomaticMaskGenerator,
    DepthEstimator,
    FeatureCache,
    PerceptionResult,
    Segmenter,
    WeightsNotFoundError,
    brush_mask,
    constant_depth,
    flood_fill_mask,
    ground_plane_depth,
    lasso_mask,
    perceive,
    threshold_mask,
)
from levitor.perception.automask import box_iou, box_nms, mask_nms, masks_to_boxes, point_grid, stability_score
from levitor.perception.sam_backends import TransformersSam, sam_checkpoint, segment_anything_available
from levitor.testing.tiny_perception import save_tiny_depth_anything, save_tiny_sam
from levitor.weights import resolve


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _isolated_homes(tmp_path, monkeypatch):
    """No test may find real weights or write into the user's levitor folder."""
    monkeypatch.setenv("LEVITOR_HOME", str(tmp_path / "levitor_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny-sam")


@pytest.fixture(scope="module")
def sam_hq_dir(tmp_path_factory):
    return save_tiny_sam(tmp_path_factory.mktemp("samhq") / "tiny-sam-hq", hq=True)


@pytest.fixture(scope="module")
def depth_dir(tmp_path_factory):
    return save_tiny_depth_anything(tmp_path_factory.mktemp("da") / "tiny-da")


def _image(seed: int = 0, height: int = 96, width: int = 160) -> np.ndarray:
    """Coloured shapes on a gradient (so masks and depth have something to find)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    img = np.stack([rows * 255 // height, cols * 255 // width, np.full_like(rows, 90)], -1).astype(np.float64)
    img[20:60, 30:80] = (220, 40, 40)
    img[((rows - 60) ** 2 + (cols - 120) ** 2) < 20**2] = (40, 60, 220)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def _count_calls(module: torch.nn.Module) -> list:
    calls: list = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


# ---------------------------------------------------------------------- loading
def test_missing_weights_say_what_to_download_and_where(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        DepthEstimator.load("small")
    text = str(err.value)
    target = tmp_path / "levitor_home" / "models" / "Depth-Anything-V2-Small-hf"
    assert f"hf download depth-anything/Depth-Anything-V2-Small-hf --local-dir {target}" in text
    assert "HF_HUB_OFFLINE is set" in text and len(text.splitlines()) <= 4  # short: what, how, where

    with pytest.raises(WeightsNotFoundError, match="facebook/sam-vit-huge"):
        Segmenter.load("vit_h")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        Segmenter.load(str(tmp_path / "no-such-folder"))
    with pytest.raises(ValueError, match="unknown model name"):
        Segmenter.load("sam-vit-gigantic")
    with pytest.raises(WeightsNotFoundError, match="downloads are off"):
        DepthEstimator.load("small", allow_download=False)


def test_resolution_order_path_then_levitor_home(tmp_path, sam_dir):
    assert resolve(sam_dir) == sam_dir
    with pytest.raises(WeightsNotFoundError):
        resolve("vit_b")  # nothing local, and offline
    # a model saved under $LEVITOR_HOME/models/<name> is found by any of its names
    local = save_tiny_sam(tmp_path / "levitor_home" / "models" / "sam-vit-base")
    for name in ("sam_vit_b", "vit_b", "facebook/sam-vit-base", "sam-vit-base"):
        assert resolve(name) == local
    seg = Segmenter.load("vit_b", device="cpu", cache=FeatureCache())
    assert isinstance(seg.backend, TransformersSam) and seg.backend.image_size == 128


def test_official_sam_checkpoint_lookup(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="sam_vit_h_4b8939.pth"):
        sam_checkpoint("vit_h")
    ckpt = tmp_path / "levitor_home" / "models" / "sam_vit_l_0b3195.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert sam_checkpoint("vit_l") == (ckpt, "vit_l")
    assert sam_checkpoint(str(ckpt)) == (ckpt, "vit_l")
    with pytest.raises(WeightsNotFoundError, match="dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"):
        Segmenter.load(str(tmp_path / "elsewhere" / "sam_vit_b_01ec64.pth"))  # a .pth picks segment_anything
    if not segment_anything_available():
        with pytest.raises(ImportError, match="torchvision"):
            Segmenter.load(str(ckpt))


# ---------------------------------------------------------------------- depth
def test_depth_estimate_shapes_range_and_cache(depth_dir):
    est = DepthEstimator.load(depth_dir, device="cpu", input_size=126, cache=FeatureCache())
    calls = _count_calls(est.model)
    img = _image()
    depth = est.estimate(img)
    assert depth.shape == img.shape[:2] and depth.dtype == np.float32
    assert depth.min() > 0 and depth.max() <= 1.0
    disparity = est.estimate_disparity(img)
    assert disparity.dtype == np.uint8 and disparity.min() == 0 and disparity.max() == 255
    np.testing.assert_array_equal(depth, depth_from_disparity(disparity))
    assert len(calls) == 1  # three answers, one network pass
    est.estimate(img.copy())  # same pixels, new array: a hit
    assert len(calls) == 1 and est.cache.hits == 2 and est.cache.misses == 1
    est.estimate(_image(seed=1))  # different pixels: a miss
    assert len(calls) == 2 and est.cache.misses == 2

    h, w = est.network_size(96, 160)
    assert h % 14 == 0 and w % 14 == 0 and min(h, w) >= 126 and abs(w / h - 160 / 96) < 0.1


def test_batched_depth_equals_one_frame_at_a_time(depth_dir):
    """Precompute's batched path (many frames per network call) against the release's one frame per call."""
    from levitor.perception.depth_fn import depth_of_frames, estimator_depth
    from levitor.testing.compare import assert_same_output

    est = DepthEstimator.load(depth_dir, device="cpu", input_size=126, cache=FeatureCache())
    frames = np.stack([_image(seed=s) for s in range(5)])
    one_by_one = np.stack([est.estimate_relative(f) for f in frames])
    for batch_size in (2, 16):                     # an uneven last batch, and all frames in one call
        batched = est.estimate_relative_batch(frames, batch_size=batch_size)
        assert batched.shape == one_by_one.shape and batched.dtype == np.float32
        # the same network on the same pixels: equal up to float32 round-off of the batched matmuls
        assert_same_output(batched, one_by_one, rtol=1e-4, atol=1e-5)
        u8 = est.estimate_disparity_batch(frames, batch_size=batch_size)
        ref = np.stack([est.estimate_disparity(f) for f in frames])
        diff = np.abs(u8.astype(int) - ref.astype(int))
        # round-off can only move a value across a 0..255 quantisation step: at most 1, and rarely
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    np.testing.assert_array_equal(depth_of_frames(estimator_depth(est), frames), est.estimate_disparity_batch(frames))
    assert est.estimate_disparity_batch(frames[:0]).shape == (0, 96, 160)
    with pytest.raises(ValueError, match="uint8"):
        est.estimate_disparity_batch(frames.astype(np.float32))


class _RowModel(torch.nn.Module):
    """A stand-in network predicting inverse depth = row index: the bottom of the image is nearest."""

    def forward(self, pixel_values):
        h, w = pixel_values.shape[-2:]
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        return type("Out", (), {"predicted_depth": rows[None]})()


def test_depth_convention_near_is_small():
    est = DepthEstimator(_RowModel(), input_size=28, cache=FeatureCache())
    depth = est.estimate(_image(height=40, width=60))
    column = depth[:, 30]
    assert column[-1] == pytest.approx(1 / 255)  # nearest pixel: disparity 255
    assert column[0] == 1.0  # farthest: disparity 0 -> depth 1
    assert np.all(np.diff(column) <= 0)  # nearer toward the bottom, monotonically


# ---------------------------------------------------------------------- click-to-mask
def test_predict_reuses_embedding_and_returns_sorted_masks(sam_dir):
    seg = Segmenter.load(sam_dir, device="cpu", cache=FeatureCache())
    encoder_calls = _count_calls(seg.backend.model.vision_encoder)
    with pytest.raises(RuntimeError, match=r"set_image\(image\) before predict"):
        seg.predict(points=[(10, 10)])
    img = _image()
    seg.set_image(img)
    masks, scores = seg.predict(points=[(50, 40)])
    assert masks.shape == (3, 96, 160) and masks.dtype == bool
    assert scores.shape == (3,) and np.all(np.diff(scores) <= 0)  # best first
    one, one_score = seg.predict(points=[(50, 40), (120, 60)], labels=[1, 0], multimask_output=False)
    assert one.shape == (1, 96, 160) and one_score.shape == (1,)
    seg.predict(box=(10, 10, 100, 80))
    threads = torch.get_num_threads()
    refined, _ = seg.predict(points=[(50, 40)], mask_input=seg.last_prediction.low_res_logits[0])
    assert refined.shape == (3, 96, 160)
    assert len(encoder_calls) == 1  # four predictions, one encoder pass
    assert torch.get_num_threads() == threads  # the one-thread decode is scoped


def test_clicks_and_box_reach_the_prompt_encoder(sam_dir):
    seg = Segmenter.load(sam_dir, device="cpu", cache=FeatureCache())
    seen: list[dict] = []
    seg.backend.model.prompt_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True
    )
    seg.set_image(_image())  # 96x160 -> longest side 128: scale 0.8, resized 77x128
    seg.predict(points=[(50, 40), (100, 60)], labels=[1, 0], box=(10, 20, 110, 70))
    prompt = seen[-1]
    sx, sy = 128 / 160, 77 / 96  # SAM scales each axis by resized / original size
    torch.testing.assert_close(prompt["input_points"][0, 0], torch.tensor([[50 * sx, 40 * sy], [100 * sx, 60 * sy]]))
    assert prompt["input_labels"][0, 0].tolist() == [1, 0]
    torch.testing.assert_close(prompt["input_boxes"][0, 0], torch.tensor([10 * sx, 20 * sy, 110 * sx, 70 * sy]))

    # a negative click changes the answer (it reaches the decoder, not just the encoder)
    _pos, _ = seg.predict(points=[(50, 40)], multimask_output=False)
    logits_pos = seg.last_prediction.low_res_logits
    seg.predict(points=[(50, 40), (100, 60)], labels=[1, 0], multimask_output=False)
    assert not np.allclose(logits_pos, seg.last_prediction.low_res_logits)


def test_bad_prompts_explain_themselves(sam_dir):
    seg = Segmenter.load(sam_dir, device="cpu", cache=FeatureCache())
    seg.set_image(_image())
    with pytest.raises(ValueError, match="outside the 160x96 image"):
        seg.predict(points=[(200, 10)])
    with pytest.raises(ValueError, match="one label per click"):
        seg.predict(points=[(10, 10), (20, 20)], labels=[1])
    with pytest.raises(ValueError, match="at least one click"):
        seg.predict()
    with pytest.raises(ValueError, match="mask_input"):
        seg.predict(points=[(10, 10)], mask_input=np.zeros((8, 8)))


def test_reloading_a_model_is_instant(sam_dir, depth_dir):
    first = Segmenter.load(sam_dir, device="cpu")
    assert Segmenter.load(sam_dir, device="cpu").backend.model is first.backend.model  # a re-run cell
    assert Segmenter.load(sam_dir, device="cpu", reuse=False).backend.model is not first.backend.model
    est = DepthEstimator.load(depth_dir, device="cpu")
    assert DepthEstimator.load(depth_dir, device="cpu").model is est.model


def test_set_image_is_cached_by_content(sam_dir, tmp_path):
    cache = FeatureCache(disk_dir=tmp_path / "cache")
    seg = Segmenter.load(sam_dir, device="cpu", cache=cache)
    calls = _count_calls(seg.backend.model.vision_encoder)
    img = _image()
    seg.set_image(img)
    first, _ = seg.predict(points=[(50, 40)])
    seg.set_image(img.copy())  # same pixels: hit
    assert seg.state.cache_hit and cache.hits == 1 and len(calls) == 1
    again, _ = seg.predict(points=[(50, 40)])
    np.testing.assert_array_equal(first, again)
    seg.set_image(_image(seed=1))  # different pixels: miss
    assert not seg.state.cache_hit and cache.misses == 2 and len(calls) == 2

    # a re-run cell: a new Segmenter (same weights) and a fresh in-memory cache still find the disk copy
    seg2 = Segmenter.load(sam_dir, device="cpu", cache=FeatureCache(disk_dir=tmp_path / "cache"))
    calls2 = _count_calls(seg2.backend.model.vision_encoder)
    seg2.set_image(img)
    assert seg2.state.cache_hit and len(calls2) == 0
    np.testing.assert_array_equal(seg2.predict(points=[(50, 40)])[0], first)


def test_sam_hq_backend(sam_hq_dir):
    seg = Segmenter.load(sam_hq_dir, device="cpu", cache=FeatureCache())
    assert seg.backend.is_hq
    calls = _count_calls(seg.backend.model.vision_encoder)
    seg.set_image(_image())
    masks, scores = seg.predict(points=[(50, 40)], labels=[1])
    seg.predict(points=[(50, 40)], box=(10, 10, 90, 70), multimask_output=False)
    seg.predict(points=[(50, 40)], mask_input=seg.last_prediction.low_res_logits[0])
    assert masks.shape == (3, 96, 160) and np.all(np.diff(scores) <= 0) and len(calls) == 1


@pytest.mark.skipif(not segment_anything_available(), reason="segment_anything needs a torchvision matching torch")
def test_segment_anything_backend_tiny():
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from levitor.perception.sam_backends import SegmentAnythingSam

    torch.manual_seed(0)
    encoder = ImageEncoderViT(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, out_chans=32,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), window_size=2, global_attn_indexes=[1])
    prompt = PromptEncoder(embed_dim=32, image_embedding_size=(4, 4), input_image_size=(64, 64), mask_in_chans=4)
    decoder = MaskDecoder(transformer_dim=32, transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64,
                                                                            num_heads=2), iou_head_hidden_dim=32)
    seg = Segmenter(SegmentAnythingSam(Sam(encoder, prompt, decoder)), cache=FeatureCache())
    seg.set_image(_image())
    masks, scores = seg.predict(points=[(50, 40), (100, 60)], labels=[1, 0], box=(10, 10, 90, 70))
    assert masks.shape == (3, 96, 160) and np.all(np.diff(scores) <= 0)


# ---------------------------------------------------------------------- NMS and mask utilities
def test_box_nms_keeps_the_expected_survivors():
    boxes = torch.tensor([
        [0, 0, 10, 10],  # 0: score .90, duplicate of 3 (IoU 1) -> suppressed by 3
        [1, 1, 11, 11],  # 1: score .80, IoU 81/119 = .68 with 3 -> kept at thr .7, suppressed at .5
        [20, 20, 30, 30],  # 2: score .70, disjoint -> kept
        [0, 0, 10, 10],  # 3: score .95, best -> kept first
        [0, 0, 0, 0],  # 4: empty box, IoU 0 with everything -> kept, last
    ], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.1])
    assert box_nms(boxes, scores, 0.7).tolist() == [3, 1, 2, 4]
    assert box_nms(boxes, scores, 0.5).tolist() == [3, 2, 4]
    assert box_iou(boxes[:2], boxes[:2])[0, 1].item() == pytest.approx(81 / 119)
    # equal scores: the earlier index wins (deterministic)
    assert box_nms(boxes[[0, 3]], torch.tensor([0.5, 0.5]), 0.7).tolist() == [0]


def test_mask_nms_uses_exact_overlap():
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[0, :, :5] = True  # left half, score .6
    masks[1, :, :4] = True  # most of the left half (IoU .8 with 0), score .9 -> kept, suppresses 0
    masks[2, :, 5:] = True  # right half, score .5 -> kept
    masks[3, 0, 0] = True  # a corner pixel inside 0 and 1: IoU .025, score .4 -> kept
    scores = torch.tensor([0.6, 0.9, 0.5, 0.4])
    assert mask_nms(masks, scores, 0.7).tolist() == [1, 2, 3]
    assert mask_nms(masks, scores, 0.9).tolist() == [1, 0, 2, 3]
    # box NMS would see 0 and 3 differently: their boxes overlap 1/50
    assert masks_to_boxes(masks).tolist() == [[0, 0, 5, 10], [0, 0, 4, 10], [5, 0, 10, 10], [0, 0, 1, 1]]
    assert masks_to_boxes(torch.zeros(1, 3, 3, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]]


def test_stability_score_and_grid():
    logits = torch.tensor([[[3.0, 0.5], [-0.5, -3.0]]])  # > 1: one pixel; > -1: three pixels
    assert stability_score(logits, 0.0, 1.0).item() == pytest.approx(1 / 3)
    grid = point_grid(2, 100, 50)
    np.testing.assert_allclose(grid, [[25, 12.5], [75, 12.5], [25, 37.5], [75, 37.5]])


# ---------------------------------------------------------------------- automatic masks
class _FakeSam:
    """A SAM stand-in with known answers on a 48x64 image (encoder 64 px, low-res masks 16x16, 4 px each).

    Objects: A = the left half, B = a 16x16 square, and the background. A click yields 3 candidates: the
    object under it (score .95), the same object grown one low-res row down (.90, a near duplicate for
    NMS) and garbage (.20, for the score filter). Logits are +-5, so masks are stable and exact.
    """

    name, model_key, image_size = "fake", "fake", 64
    pixel_mean, pixel_std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    device = torch.device("cpu")

    def __init__(self):
        self.encode_calls = 0
        a = torch.zeros(16, 16, dtype=torch.bool)
        a[:, :8] = True
        b = torch.zeros(16, 16, dtype=torch.bool)
        b[2:6, 10:14] = True
        self.objects = [a, b, ~(a | b)]  # background also covers the padding rows 12..15

    def encode(self, pixel_values):
        self.encode_calls += 1
        return {"embeddings": torch.zeros(1, 1, 4, 4)}

    def decode(self, features, points, labels, boxes, mask_input, multimask_output):
        out, scores = [], []
        for p in points[:, 0]:
            col, row = int(p[0] // 4), int(p[1] // 4)
            obj = next(o for o in self.objects if o[row, col])
            shifted = obj.clone()
            shifted[1:] |= obj[:-1]  # one low-res row taller: IoU .8 with B, a near duplicate
            garbage = torch.zeros_like(obj)
            garbage[0, 0] = True
            out.append(torch.stack([obj, shifted, garbage]).float() * 10 - 5)
            scores.append(torch.tensor([0.95, 0.90, 0.20]))
        return torch.stack(out), torch.stack(scores)


def _true_masks():
    a = np.zeros((48, 64), bool)
    a[:, :32] = True
    b = np.zeros((48, 64), bool)
    b[8:24, 40:56] = True
    return a, b, ~(a | b)


def test_automatic_masks_known_objects_sorted_and_deduplicated():
    fake = _FakeSam()
    seg = Segmenter(fake, cache=FeatureCache())
    gen = AutomaticMaskGenerator(seg, points_per_side=8, points_per_batch=5)
    result = gen.generate(np.zeros((48, 64, 3), np.uint8), progress=False)
    a, b, background = _true_masks()
    assert len(result) == 3  # 64 clicks x 3 candidates -> garbage filtered, duplicates suppressed
    areas = [m.area for m in result]
    assert areas == sorted(areas, reverse=True)
    # bilinear upsampling of the 16x16 logits rounds B's 4 corners off (as in SAM); otherwise masks are exact
    for got, want in zip(result, (a, background, b)):
        assert (got.mask != want).sum() <= 4
        assert got.predicted_iou == pytest.approx(0.95) and got.stability_score == 1.0
    assert result[2].bbox == (40, 8, 56, 24)
    # a click picks the precomputed mask instantly
    assert result.mask_at(45, 10) == 2 and result.mask_at(5, 5) == 0 and result.mask_at(60, 40) == 1
    assert result.mask_at(-1, 0) is None
    # re-running is free and identical
    assert gen.generate(np.zeros((48, 64, 3), np.uint8), progress=False) is result and fake.encode_calls == 1

    # the release's tiny-mask rule, exaggerated: drop masks of at most 10% of the image -> B (8.3%) goes
    big_only = AutomaticMaskGenerator(seg, points_per_side=8, min_area_fraction=0.1).generate(
        np.zeros((48, 64, 3), np.uint8), progress=False)
    assert [m.area for m in big_only] == areas[:2]
    # exact mask NMS finds the same three objects
    assert len(AutomaticMaskGenerator(seg, points_per_side=8, nms="mask").generate(
        np.zeros((48, 64, 3), np.uint8), progress=False)) == 3


def test_automatic_masks_tiny_sam_deterministic(sam_dir):
    seg = Segmenter.load(sam_dir, device="cpu", cache=FeatureCache())
    calls = _count_calls(seg.backend.model.vision_encoder)
    cfg = AutoMaskConfig(points_per_side=6, pred_iou_thresh=-1e9, stability_score_thresh=0.0, nms="both")
    img = _image()
    first = AutomaticMaskGenerator(seg, cfg).generate(img, progress=True)
    second = AutomaticMaskGenerator(seg, cfg).generate(img.copy(), progress=False)
    assert len(first) == len(second) > 0
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x.mask, y.mask)
    areas = [m.area for m in first]
    assert areas == sorted(areas, reverse=True)
    assert min(areas) > 0.001 * img.shape[0] * img.shape[1]
    assert all(m.mask.shape == img.shape[:2] and m.mask.dtype == bool for m in first)
    assert len(calls) == 1  # the second generator found the embedding in the cache
    with pytest.raises(TypeError, match="unknown AutoMaskConfig fields"):
        AutomaticMaskGenerator(seg, points_per_sid=4)


# ---------------------------------------------------------------------- cache
def test_feature_cache_is_bounded_by_bytes():
    cache = FeatureCache(max_bytes=3 * 400)
    for i in range(4):
        cache.put(f"k{i}", torch.zeros(100))  # 400 bytes each
    assert "k0" not in cache and all(f"k{i}" in cache for i in (1, 2, 3))
    cache.get("k1")  # k1 becomes most recent, so k2 is the next to go
    cache.put("k4", torch.zeros(100))
    assert "k2" not in cache and "k1" in cache and cache.stats.items == 3


# ---------------------------------------------------------------------- no-weights mode
@pytest.fixture(scope="module")
def bundled():
    return bundled_scene()


def test_lasso_and_brush_masks():
    square = lasso_mask([(10, 10), (29, 10), (29, 19), (10, 19)], (40, 50))
    assert square.sum() == 20 * 10 and square[10, 10] and square[19, 29] and not square[20, 10]
    line = brush_mask([(10, 20), (40, 20)], radius=3, shape=(40, 50))
    assert line[20, 10:41].all() and line[17:24, 25].all() and not line[26, 25] and not line[20, 45]
    two = brush_mask([[(5, 5)], [(30, 30), (30, 35)]], radius=2, shape=(40, 50))
    assert two[5, 5] and two[33, 30] and not two[20, 20]
    with pytest.raises(ValueError, match="at least 3 points"):
        lasso_mask([(0, 0), (5, 5)], (10, 10))


def test_flood_fill_and_threshold_on_the_bundled_scene(bundled):
    image = bundled.image
    box = bundled.masks[4]  # blue box; its right half is shaded darker
    left = flood_fill_mask(image, (300, 180), tolerance=25)
    whole = flood_fill_mask(image, (300, 180), tolerance=70)
    iou = lambda m, t: (m & t).sum() / (m | t).sum()
    box_left = box & (np.arange(image.shape[1])[None, :] < 326)
    assert iou(left, box_left) > 0.95
    assert iou(whole, box) > 0.95
    with pytest.raises(ValueError, match="outside"):
        flood_fill_mask(image, (600, 10))
    blue = threshold_mask(image, (0, 0, 120), (90, 130, 255), seed=(300, 180))
    assert iou(blue, box) > 0.9


def test_ground_plane_and_constant_depth():
    depth = ground_plane_depth((100, 40), horizon=0.3)
    assert depth.shape == (100, 40) and depth.dtype == np.float32
    assert depth.min() == pytest.approx(1 / 255) and depth.max() == 1.0
    assert np.all(depth[:30] == 1.0)  # on and above the horizon: farthest
    assert np.all(np.diff(depth[:, 0]) <= 0)  # nearer toward the bottom

    obj = np.zeros((100, 40), bool)
    obj[50:80, 10:20] = True  # stands on the floor at row 79
    out = constant_depth([obj], background=depth)
    assert np.all(out[obj] == depth[79, 15]) and np.all(out[~obj] == depth[~obj])
    assert np.all(constant_depth([obj], [0.25], background=1.0)[obj] == 0.25)
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        constant_depth([obj], [0.0], background=depth)


def test_perceive_without_weights_builds_a_scene(bundled):
    image = bundled.image
    ball = lasso_mask([(112, 190), (188, 190), (188, 266), (112, 266)], image.shape[:2])
    box = flood_fill_mask(image, (300, 180), tolerance=70)
    result = perceive(image, depth="constant", masks=[ball, box], mask_sources=["lasso", "flood"],
                      horizon=110 / 319)
    assert isinstance(result, PerceptionResult)
    assert result.mask_sources == ["lasso", "flood"] and result.depth_source == "constant"
    floor = ground_plane_depth(image.shape[:2], 110 / 319)
    assert np.all(result.depth[box] == floor[213, 326])  # the box stands where its bottom row touches the floor
    built = result.to_scene(image)
    assert built.depth_source == "constant" and built.mask_sources == ["lasso", "flood"] and len(built.masks) == 2
    # nearer objects have smaller depth: the ball stands lower in the picture than the box
    assert result.depth[228, 150] < result.depth[180, 326]

    # the ground-plane guess matches the bundled scene's exact floor up to scale (both disparities are linear in row)
    ground = bundled.masks[1]
    assert np.corrcoef(1 / floor[ground], 1 / bundled.depth[ground])[0, 1] > 0.99

    flat = perceive(image)
    assert flat.depth_source == "ground-plane" and flat.masks == []
    with pytest.raises(ValueError, match="mask_sources"):
        perceive(image, masks=[ball], mask_sources=["magic"])


def test_perceive_with_models(sam_dir, depth_dir):
    seg = Segmenter.load(sam_dir, device="cpu", cache=FeatureCache())
    est = DepthEstimator.load(depth_dir, device="cpu", input_size=126, cache=FeatureCache())
    img = _image()
    cfg = AutoMaskConfig(points_per_side=4, pred_iou_thresh=-1e9, stability_score_thresh=0.0)
    result = perceive(img, depth=est, segmenter=seg, automask=cfg, progress=False)
    assert result.depth_source == "depth-anything-v2" and result.depth.shape == img.shape[:2]
    assert len(result.masks) == len(result.automatic) > 0
    assert set(result.mask_sources) == {"sam-auto"}


def test_flush_denormals_is_scoped():
    from levitor._util.threads import flush_denormals, flush_denormals_enabled

    before = flush_denormals_enabled()
    with flush_denormals("cpu"):
        assert flush_denormals_enabled()  # denormals (softmax/GELU tails) are flushed while a model runs
    assert flush_denormals_enabled() == before
