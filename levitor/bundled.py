"""The embedded default scene: a procedurally drawn image with known depth and masks, no download.

A ground plane under a sky, a house far away, a tree, a box and a ball standing on the ground. Depth is
exact (the ground's disparity grows linearly below the horizon; each object stands where it touches the
ground). Two objects are selected with paths that show what LeviTor is about: the ball comes 2x nearer
(it grows), the box moves right and a little farther away, passing behind the tree (it is occluded).
"""

from __future__ import annotations

import numpy as np

from levitor.defaults import DEFAULT_SIZE
from levitor.depth import depth_from_disparity
from levitor.scene import ObjectTrack, PathPoint, Scene

HEIGHT, WIDTH = DEFAULT_SIZE.height, DEFAULT_SIZE.width  # the scene is drawn at this size
HORIZON = 110  # image row of the horizon
GROUND_DISPARITY = (12.0, 240.0)  # disparity at the horizon and at the bottom row


def ground_disparity(row: np.ndarray | float) -> np.ndarray:
    lo, hi = GROUND_DISPARITY
    return lo + (np.asarray(row, dtype=np.float64) - HORIZON) / (HEIGHT - 1 - HORIZON) * (hi - lo)


def bundled_scene(height: int = HEIGHT, width: int = WIDTH, num_frames: int = DEFAULT_SIZE.num_frames) -> Scene:
    """The demo scene, optionally at another size (drawn at the default size and resized, nearest for masks)."""
    rng = np.random.default_rng(0)
    H, W = HEIGHT, WIDTH
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.zeros((H, W, 3), np.float64)
    disp = np.zeros((H, W), np.float64)

    sky = rows < HORIZON
    t = rows / HORIZON
    img[sky] = (np.stack([110 + 60 * t, 160 + 50 * t, 235 + 0 * t], -1))[sky]
    ground = ~sky
    stripes = (np.floor((cols - W / 2) / np.maximum(rows - HORIZON + 8, 1) * 6) % 2)[ground]
    shade = 0.75 + 0.25 * (rows[ground] - HORIZON) / (H - HORIZON)
    base = np.stack([95 + 25 * stripes, 140 + 20 * stripes, 70 + 10 * stripes], -1) * shade[:, None]
    img[ground] = base
    disp[ground] = ground_disparity(rows[ground])

    masks: dict[str, np.ndarray] = {"sky": sky.copy(), "ground": ground.copy()}

    def stand(mask: np.ndarray, color, name: str, shading: np.ndarray | None = None) -> None:
        bottom = np.nonzero(mask.any(1))[0].max()
        c = np.asarray(color, np.float64)
        img[mask] = c * (1.0 if shading is None else shading[mask][:, None])
        disp[mask] = ground_disparity(bottom)
        for other in masks.values():
            other &= ~mask
        masks[name] = mask

    house = (rows >= 72) & (rows < 122) & (cols >= 40) & (cols < 112)
    roof = (rows >= 48) & (rows < 72) & (np.abs(cols - 76) < (rows - 48) * 1.6)
    stand(house | roof, (205, 190, 120), "house", np.where(roof, 0.7, 1.0))
    trunk = (np.abs(cols - 420) < 9) & (rows >= 190) & (rows < 232)
    crown = ((cols - 420) ** 2 / 46**2 + (rows - 150) ** 2 / 55**2) <= 1
    stand(trunk | crown, (50, 130, 45), "tree", 0.8 + 0.2 * rng.random((H, W)))
    img[trunk & ~crown] = (110, 78, 48)  # a brown trunk
    box = (cols >= 290) & (cols < 362) & (rows >= 150) & (rows < 214)
    stand(box, (50, 90, 200), "box", np.where(cols < 326, 1.0, 0.8))
    r2 = ((cols - 150) ** 2 + (rows - 228) ** 2) / 38.0**2
    ball = r2 <= 1
    stand(ball, (215, 50, 45), "ball", 1.15 - 0.45 * np.sqrt(np.clip(r2, 0, 1)) * ((cols - 150) + (rows - 228) > 0))

    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    depth = depth_from_disparity(np.clip(np.round(disp), 0, 255).astype(np.uint8))

    names = ["sky", "ground", "house", "tree", "box", "ball"]
    scene = Scene(
        image=img, depth=depth, masks=[masks[n] for n in names], num_frames=num_frames,
        mask_sources=["synthetic"] * len(names), depth_source="synthetic", image_path=None,
    )
    ball_d = scene.depth_at(150, 228)
    box_d = scene.depth_at(326, 182)
    # handles: where each object's anchor (its P1, on the object) is seen at each point (levitor.motion.handles)
    scene.objects = [
        ObjectTrack(names.index("ball"), [PathPoint(150, 228, ball_d), PathPoint(163.6, 235.6, ball_d / 1.4),
                                           PathPoint(196, 240, ball_d / 2.0)], "ball"),
        ObjectTrack(names.index("box"), [PathPoint(326, 182, box_d), PathPoint(386.9, 176.4, box_d * 1.1),
                                          PathPoint(451, 172.5, box_d * 1.2)], "box"),
    ]
    if (height, width) != (H, W):
        scene = resize_scene(scene, height, width)
    return scene.validate()


def resize_scene(scene: Scene, height: int, width: int) -> Scene:
    """The same scene at another resolution (image bilinear, depth and masks nearest, paths scaled)."""
    from PIL import Image

    sx, sy = width / scene.width, height / scene.height
    img = np.asarray(Image.fromarray(scene.image).resize((width, height), Image.BILINEAR))
    near = lambda a: np.asarray(Image.fromarray(a).resize((width, height), Image.NEAREST))
    depth = near(scene.depth.astype(np.float32))
    masks = [near(m.astype(np.uint8)).astype(bool) for m in scene.masks]
    out = scene.copy()
    out.image, out.depth, out.masks = img, depth, masks
    for obj in out.objects:
        for p in obj.path:
            p.x, p.y = p.x * sx, p.y * sy
    for p in out.camera_path:
        p.x, p.y = p.x * sx, p.y * sy
    if out.intrinsics is not None:
        k = out.intrinsics
        out.intrinsics = type(k)(k.fx * sx, k.fy * sy, k.cx * sx, k.cy * sy)
    return out
