"""A procedural 3D world of sprites: videos with ground-truth masks, depth and 3D tracks.

What real data lacks and training and evaluation want: exact per-object masks, per-pixel depth in the
project's convention, and the 3D path of every object. A clip is a textured back wall and ground plane seen by
a pinhole camera (optionally panning sideways), and 1-4 textured primitives (disc, square, diamond) moving on
straight 3D paths: approaching, receding, crossing, leaving the frame, passing behind one another.

Geometry, in the release's disparity terms (:mod:`levitor.depth`): every surface has a *disparity* d in
0..255 (larger = nearer) and its scene depth is ``1 / d``, in (0, 1], smaller = nearer. The camera looks
horizontally; a world point (X, Y) at disparity d projects to pixel

    x = cx + (X - cam_x) * d / D_REF,    y = horizon + Y * d / D_REF

so an object twice as near is drawn twice as large (``D_REF`` is the disparity at which one world unit is one
pixel). Each frame is rendered with the project's z-buffer (:func:`levitor.motion.render.splat`): every pixel
of every layer (wall, ground, each sprite) is a point at its depth, the nearest wins. Instance ids: 0 for the
background, 1..n for the sprites (optionally n+1 ground, n+2 wall).

Deterministic by seed; any resolution and frame count. The on-disk layout is DAVIS's
(:func:`write_davis_layout`), plus ``Depth/`` and ``Tracks/``, so the real-data readers and this world share code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from levitor.data.davis import write_palette_png
from levitor.defaults import NUM_FRAMES
from levitor.depth import DEFAULT_HORIZON
from levitor.motion.render import splat
from levitor.scene import PathPoint, Scene

D_REF = 60.0  # disparity at which one world unit is one pixel (the scale of a sprite's nominal size)
WALL_DISPARITY = 6.0  # the far wall: disparity 6 -> scene depth 1/6
GROUND_BOTTOM_DISPARITY = 150.0  # the ground under the bottom image row
MAX_SPRITE_DISPARITY = 235.0  # keep approaching sprites on the 0..255 scale with room to spare

# flat, well-separated sprite colours (RGB); the background is desaturated, so a sprite is found by its colour
PALETTE = np.array([
    (230, 40, 40),    # red
    (40, 190, 60),    # green
    (50, 80, 235),    # blue
    (240, 210, 40),   # yellow
    (215, 50, 215),   # magenta
    (40, 205, 215),   # cyan
], dtype=np.float32)
SHAPES = ("disc", "square", "diamond")
KINDS = ("approach", "recede", "cross", "leave")  # the motion of a free sprite; "front"/"behind" for pass-behind


@dataclass
class SyntheticConfig:
    """What kind of clips the world makes."""

    height: int = 64
    width: int = 64
    num_frames: int = NUM_FRAMES
    min_sprites: int = 1
    max_sprites: int = 4
    texture: float = 1.0          # 0: flat colours everywhere; 1: full-strength stripes/checkers/noise
    sprite_size: tuple[float, float] = (0.07, 0.13)  # nominal radius at D_REF, as a fraction of min(H, W)
    sprite_disparity: tuple[float, float] = (30.0, 110.0)  # where sprites start (their "middle" distance)
    approach_factor: tuple[float, float] = (1.8, 3.0)  # approach/recede: disparity changes by this factor
    pass_behind_prob: float = 0.35  # chance that two sprites of a clip are a front/behind pair
    leave_prob: float = 0.15      # chance that a free sprite leaves the frame
    camera_pan_prob: float = 0.2  # chance of a sideways camera move
    camera_pan: float = 0.25      # its largest extent, as a fraction of the width (at D_REF)
    background_instances: bool = False  # give the ground (n+1) and the wall (n+2) instance ids too

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"clips must be at least 8x8 pixels, got {self.height}x{self.width}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if not 1 <= self.min_sprites <= self.max_sprites <= len(PALETTE):
            raise ValueError(f"need 1 <= min_sprites <= max_sprites <= {len(PALETTE)} (one palette colour each), "
                             f"got {self.min_sprites}..{self.max_sprites}")
        self.sprite_size = tuple(self.sprite_size)
        self.sprite_disparity = tuple(self.sprite_disparity)
        self.approach_factor = tuple(self.approach_factor)


@dataclass
class Sprite:
    """One moving object of a clip and its ground truth."""

    id: int                 # instance id, 1..n
    color: tuple[int, int, int]
    shape: str              # one of SHAPES
    kind: str               # approach, recede, cross, leave, front, behind
    size: float             # world radius (pixels at D_REF)
    world: np.ndarray       # (F, 3) (X, Y, scene depth) per frame
    screen: np.ndarray      # (F, 3) (x, y, disparity) of the centre per frame, camera motion included
    radius: np.ndarray      # (F,) radius in pixels per frame


@dataclass
class SyntheticClip:
    """A rendered clip.

    frames: (F, H, W, 3) uint8 RGB. instance: (F, H, W) int64, 0 = background, sprite ids 1..n.
    depth: (F, H, W) float32 scene depth ``1 / disparity`` in (0, 1], smaller = nearer.
    sprites: ground truth per object. pairs: (front id, behind id) of each pass-behind pair.
    camera_x: (F,) the camera's sideways position (world units).
    """

    frames: np.ndarray
    instance: np.ndarray
    depth: np.ndarray
    sprites: list[Sprite]
    pairs: list[tuple[int, int]] = field(default_factory=list)
    camera_x: np.ndarray | None = None
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def object_ids(self) -> list[int]:
        return [s.id for s in self.sprites]

    @property
    def moved_ids(self) -> list[int]:
        """Sprites whose centre moves by more than a pixel (they get at least 3 control points)."""
        out = []
        for s in self.sprites:
            if np.abs(s.screen[:, :2] - s.screen[:1, :2]).max() > 1.0 or np.ptp(s.radius) > 1.0:
                out.append(s.id)
        return out

    def disparity_u8(self) -> np.ndarray:
        """(F, H, W) uint8 disparity map, the release's 0..255 depth-map format."""
        return np.clip(np.round(1.0 / self.depth), 0, 255).astype(np.uint8)

    def areas(self) -> np.ndarray:
        """(F, n) visible pixel count of each sprite per frame."""
        return np.stack([(self.instance == s.id).sum(axis=(1, 2)) for s in self.sprites], axis=1)

    def to_scene(self) -> Scene:
        """The scene a user would build from the first frame to ask for this clip's motion: every sprite seen in
        frame 0 selected, its path the sprite's centre and depth in every frame; the background's instances
        (``background_instances``: ground, wall) as masks that stay put, so they get static control points as in
        training. The engine re-renders the clip from it (the warped video training-free guidance steers by); the
        background stays still (a camera pan is not carried over), and a sprite hidden in frame 0 cannot be
        lifted, so it is left out."""
        scene = Scene(image=self.frames[0].copy(), depth=self.depth[0].copy(), num_frames=self.num_frames,
                      interpolation="linear", depth_source="synthetic")
        for sp in self.sprites:
            mask = self.instance[0] == sp.id
            if not mask.any():
                continue
            obj = scene.select(scene.add_mask(mask, source="synthetic"), name=f"sprite {sp.id}")
            obj.path = [PathPoint(float(x), float(y), float(z), frame)
                        for frame, ((x, y, _), z) in enumerate(zip(sp.screen, sp.world[:, 2]))]
        for background in sorted(set(np.unique(self.instance[0]).tolist()) - {0, *self.object_ids}):
            scene.add_mask(self.instance[0] == background, source="synthetic")
        return scene

    def track_dict(self) -> dict:
        """JSON-serialisable ground truth: sprites, 3D and screen tracks, pass-behind pairs, camera."""
        return {
            "seed": self.seed,
            "pairs": [list(p) for p in self.pairs],
            "camera_x": [] if self.camera_x is None else self.camera_x.round(4).tolist(),
            "sprites": [{
                "id": s.id, "color": list(s.color), "shape": s.shape, "kind": s.kind, "size": round(s.size, 4),
                "world": s.world.round(5).tolist(), "screen": s.screen.round(3).tolist(),
                "radius": s.radius.round(3).tolist(),
            } for s in self.sprites],
        }


# ------------------------------------------------------------------------------------------- paths


def _sprite_paths(rng: np.random.Generator, cfg: SyntheticConfig, n: int, with_pair: bool):
    """Key positions (start, end) in screen terms at a still camera: per sprite ((x, y, d), (x, y, d)), kind."""
    H, W = cfg.height, cfg.width
    lo, hi = cfg.sprite_disparity
    out = []
    for _ in range(n):
        kind = rng.choice(KINDS[:3]) if rng.random() >= cfg.leave_prob else "leave"
        d0 = rng.uniform(lo, hi)
        f = rng.uniform(*cfg.approach_factor)
        d1 = {"approach": min(d0 * f, MAX_SPRITE_DISPARITY), "recede": d0 / f}.get(kind, d0 * rng.uniform(0.8, 1.25))
        if kind == "approach" and d0 * f > MAX_SPRITE_DISPARITY:  # start farther so the full factor fits
            d0 = max(MAX_SPRITE_DISPARITY / f, 8.0)
        x0, y0 = rng.uniform(0.2, 0.8) * W, rng.uniform(0.3, 0.75) * H
        if kind == "cross":
            x1 = W - x0 + rng.uniform(-0.1, 0.1) * W
            y1 = y0 + rng.uniform(-0.15, 0.15) * H
        elif kind == "leave":
            side = rng.choice([-1.0, 1.0])
            x1 = W / 2 + side * rng.uniform(0.85, 1.1) * W
            y1 = y0 + rng.uniform(-0.2, 0.2) * H
        else:  # approach/recede: a shorter sideways drift
            x1 = x0 + rng.uniform(-0.25, 0.25) * W
            y1 = y0 + rng.uniform(-0.1, 0.1) * H
        out.append([(x0, y0, d0), (x1, y1, d1), str(kind)])
    if with_pair and n >= 2:
        # sprite 1 stands in front near the middle; sprite 2 crosses behind it, clearly farther
        xf, yf = rng.uniform(0.35, 0.65) * W, rng.uniform(0.4, 0.65) * H
        df = rng.uniform(max(lo, 60.0), max(hi, 120.0))
        drift = rng.uniform(-0.06, 0.06, size=2) * W
        out[0] = [(xf, yf, df), (xf + drift[0], yf + drift[1] * 0.5, df * rng.uniform(0.95, 1.1)), "front"]
        db = df * rng.uniform(0.35, 0.6)
        side = rng.choice([-1.0, 1.0])
        yb = yf + rng.uniform(-0.08, 0.08) * H
        out[1] = [(W / 2 - side * 0.45 * W, yb, db), (W / 2 + side * 0.45 * W, yb + rng.uniform(-0.05, 0.05) * H,
                                                      db * rng.uniform(0.9, 1.1)), "behind"]
    return out


def _ease(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Time parameter 0..1 per frame: linear or smooth-step, chosen at random."""
    t = np.linspace(0.0, 1.0, num_frames)
    return t if rng.random() < 0.5 else t * t * (3 - 2 * t)


# ------------------------------------------------------------------------------------------- textures


def _value_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """A (cells+1, cells+1) lattice of random values, sampled bilinearly by :func:`_sample_noise`."""
    return rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1)).astype(np.float32)


def _sample_noise(lattice: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of a periodic lattice at (u, v) in lattice cells (any shape)."""
    n = lattice.shape[0] - 1
    u0, v0 = torch.floor(u), torch.floor(v)
    fu, fv = u - u0, v - v0
    i0, j0 = u0.long() % n, v0.long() % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    a, b = lattice[j0, i0], lattice[j0, i1]
    c, d = lattice[j1, i0], lattice[j1, i1]
    return (a * (1 - fu) + b * fu) * (1 - fv) + (c * (1 - fu) + d * fu) * fv


def _grey(rng: np.random.Generator, lo: float, hi: float, tint: float = 18.0) -> np.ndarray:
    """A desaturated colour: grey level in [lo, hi] plus a small random tint."""
    return np.clip(rng.uniform(lo, hi) + rng.uniform(-tint, tint, size=3), 0, 255).astype(np.float32)


# ------------------------------------------------------------------------------------------- rendering


def _inside(shape: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Is the sprite-local point (u, v) (in radii) inside the primitive?"""
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return torch.maximum(u.abs(), v.abs()) <= 0.85
    return u.abs() + v.abs() <= 1.15  # diamond


def generate_clip(seed: int, config: SyntheticConfig | None = None) -> SyntheticClip:
    """Render one clip; the same seed and config give the same clip, bit for bit."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(seed)
    F, H, W = cfg.num_frames, cfg.height, cfg.width
    horizon = DEFAULT_HORIZON * H  # the camera looks horizontally
    ground_g = (H - horizon) * D_REF / GROUND_BOTTOM_DISPARITY  # world height of the ground plane below the camera
    cx = W / 2.0

    n = int(rng.integers(cfg.min_sprites, cfg.max_sprites + 1))
    with_pair = n >= 2 and rng.random() < cfg.pass_behind_prob
    keys = _sprite_paths(rng, cfg, n, with_pair)
    colors = rng.permutation(len(PALETTE))[:n]
    pan = 0.0
    if rng.random() < cfg.camera_pan_prob:
        pan = rng.uniform(-1.0, 1.0) * cfg.camera_pan * W
    camera_x = (np.linspace(0.0, 1.0, F) * pan).astype(np.float64)

    # ---- sprites: key positions -> straight 3D paths -> per-frame screen positions
    scale_min = min(H, W)
    sprites: list[Sprite] = []
    for i, ((x0, y0, d0), (x1, y1, d1), kind) in enumerate(keys):
        size = rng.uniform(*cfg.sprite_size) * scale_min
        ends = []
        for x, y, d in ((x0, y0, d0), (x1, y1, d1)):
            s = d / D_REF
            X, Y = (x - cx) / s, (y - horizon) / s
            Y = min(Y, ground_g - size)  # stay above the ground plane (so the ground never hides a sprite)
            ends.append((X, Y, 1.0 / d))
        t = _ease(F, rng)[:, None]
        world = (1 - t) * np.array(ends[0]) + t * np.array(ends[1])  # straight line in (X, Y, Z)
        disp = 1.0 / world[:, 2]
        s = disp / D_REF
        screen = np.stack([cx + (world[:, 0] - camera_x) * s, horizon + world[:, 1] * s, disp], axis=1)
        sprites.append(Sprite(id=i + 1, color=tuple(int(c) for c in PALETTE[colors[i]]),
                              shape=str(rng.choice(SHAPES)), kind=kind, size=float(size), world=world,
                              screen=screen, radius=size * s))
    pairs = [(1, 2)] if with_pair else []

    # ---- textures (random per clip, fixed in world/sprite coordinates so they move with their surface)
    tex = cfg.texture
    wall_a, wall_b = _grey(rng, 120, 200), _grey(rng, 90, 170)
    ground_a, ground_b = _grey(rng, 70, 130, tint=12), _grey(rng, 40, 100, tint=12)
    lattice = torch.from_numpy(_value_noise(rng, 8))
    checker = rng.uniform(6.0, 14.0)  # ground checker size, world units
    stripes = [(rng.uniform(2.0, 4.0), rng.uniform(0, np.pi)) for _ in sprites]

    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32) + 0.5,
                            torch.arange(W, dtype=torch.float32) + 0.5, indexing="ij")
    # a still camera sees the same background in every frame: compute it once
    bg_frames = F if pan != 0.0 else 1
    cam = torch.from_numpy(camera_x[:bg_frames]).float()[:, None, None]  # (F or 1, 1, 1)

    # background: the ground where it is nearer than the wall, else the wall
    ground_disp = (ys - horizon).clamp(min=0) / ground_g * D_REF  # (H, W)
    is_ground = ground_disp > WALL_DISPARITY
    bg_disp = torch.where(is_ground, ground_disp, torch.full_like(ground_disp, WALL_DISPARITY))
    s_bg = (bg_disp / D_REF)[None]
    X = (xs[None] - cx) / s_bg + cam  # world X of each background pixel, per frame
    Yw = (ys[None] - horizon) / s_bg
    gz = D_REF / ground_disp.clamp(min=1e-3)[None]  # ground: distance along the floor (world units)
    chk = ((torch.floor(X / checker) + torch.floor(gz * 4.0 / checker)) % 2)
    ground_rgb = torch.from_numpy(ground_a) + chk[..., None] * torch.from_numpy(ground_b - ground_a) * tex \
        + (1 - tex) * 0.5 * torch.from_numpy(ground_b - ground_a)
    wall_noise = _sample_noise(lattice, X / (W / 4.0), Yw / (H / 4.0))
    wall_mix = (0.5 + 0.5 * tex * wall_noise)[..., None]
    wall_rgb = torch.from_numpy(wall_a) * wall_mix + torch.from_numpy(wall_b) * (1 - wall_mix)
    bg_rgb = torch.where(is_ground[None, ..., None], ground_rgb, wall_rgb).expand(F, H, W, 3)
    bg_depth = (1.0 / bg_disp)[None].expand(F, H, W)
    bg_id = torch.zeros(F, H, W, dtype=torch.int64)
    if cfg.background_instances:
        bg_id = torch.where(is_ground, n + 1, n + 2)[None].expand(F, H, W)

    # ---- z-buffer: every sprite pixel is a point, splatted (the nearest wins); then the background shows
    # wherever no sprite is nearer than it
    pts_xy, pts_z, pts_f, pts_id, pts_rgb = [], [], [], [], []
    for sp, (freq, angle) in zip(sprites, stripes):
        c = torch.from_numpy(sp.screen).float()
        r = torch.from_numpy(sp.radius).float().clamp(min=0.5)[:, None, None]
        u = (xs[None] - c[:, 0, None, None]) / r
        v = (ys[None] - c[:, 1, None, None]) / r
        inside = _inside(sp.shape, u, v)
        f_idx, y_idx, x_idx = torch.nonzero(inside, as_tuple=True)
        uu, vv = u[inside], v[inside]
        stripe = torch.sin((uu * np.cos(angle) + vv * np.sin(angle)) * freq * np.pi)
        shade = 1.0 - tex * 0.22 * (stripe > 0).float() - 0.12 * (uu * uu + vv * vv)  # stripes + a little shading
        rgb = torch.tensor(sp.color, dtype=torch.float32)[None] * shade[:, None]
        # splat puts a point at (x, y) into pixel (round(x), round(y)): points sit at integer pixel coordinates
        pts_xy.append(torch.stack([x_idx.float(), y_idx.float()], 1))
        pts_z.append(torch.from_numpy(sp.world[:, 2]).float()[f_idx])
        pts_f.append(f_idx)
        pts_id.append(torch.full_like(f_idx, sp.id))
        pts_rgb.append(rgb)
    hit = splat(torch.cat(pts_xy), torch.cat(pts_z), torch.cat(pts_f), F, H, W)
    ids, rgbs = torch.cat(pts_id), torch.cat(pts_rgb)
    flat_rgb = bg_rgb.reshape(-1, 3).clone()
    flat_id = bg_id.reshape(-1).clone()
    flat_z = bg_depth.reshape(-1).clone()
    front = hit.z <= flat_z[hit.pixel]  # a sprite at the background's depth wins the tie
    pix, pt = hit.pixel[front], hit.point[front]
    flat_rgb[pix], flat_id[pix], flat_z[pix] = rgbs[pt], ids[pt], hit.z[front]
    frames = flat_rgb.view(F, H, W, 3).clamp(0, 255).round().to(torch.uint8).numpy()
    instance = flat_id.view(F, H, W).numpy()
    depth = flat_z.view(F, H, W).numpy().astype(np.float32)
    return SyntheticClip(frames=frames, instance=instance, depth=depth, sprites=sprites, pairs=pairs,
                         camera_x=camera_x, seed=int(seed))


# ------------------------------------------------------------------------------------------- on disk


def write_davis_layout(root: str | Path, seeds, config: SyntheticConfig | None = None, split: str = "train",
                       resolution: str = "480p") -> list[str]:
    """Write clips in DAVIS's layout (readable by :class:`levitor.data.davis.DavisDataset`), plus ground truth.

    ``<root>/JPEGImages/<resolution>/<name>/00000.jpg``, ``Annotations/<resolution>/<name>/00000.png`` (palette
    PNG of instance ids), ``ImageSets/2017/<split>.txt``; beyond DAVIS: ``Depth/<name>.npy`` ((F, H, W) uint8
    disparity, depth = 1 / disparity) and ``Tracks/<name>.json`` (:meth:`SyntheticClip.track_dict`).
    Returns the sequence names. ``resolution`` is only the folder name (DAVIS's reader looks for it).
    """
    from PIL import Image

    root = Path(root)
    names = []
    for seed in seeds:
        clip = generate_clip(int(seed), config)
        name = f"synthetic_{int(seed):08d}"
        img_dir = root / "JPEGImages" / resolution / name
        ann_dir = root / "Annotations" / resolution / name
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for f in range(clip.num_frames):
            Image.fromarray(clip.frames[f]).save(img_dir / f"{f:05d}.jpg", quality=95)
            write_palette_png(ann_dir / f"{f:05d}.png", clip.instance[f])
        (root / "Depth").mkdir(exist_ok=True)
        np.save(root / "Depth" / f"{name}.npy", clip.disparity_u8())
        (root / "Tracks").mkdir(exist_ok=True)
        (root / "Tracks" / f"{name}.json").write_text(json.dumps(clip.track_dict()))
        names.append(name)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    listing = sets / f"{split}.txt"
    old = listing.read_text().split() if listing.exists() else []
    listing.write_text("\n".join(sorted(set(old) | set(names))) + "\n")
    (root / "synthetic_config.json").write_text(json.dumps(asdict(config or SyntheticConfig())))
    return names


def sprite_silhouette(sprite: Sprite, height: int, width: int) -> np.ndarray:
    """(F, H, W) bool: where the sprite would cover the image if nothing were in front of it (its full shape).

    Used to check occlusion order: where two silhouettes overlap, the nearer sprite must be the one visible.
    """
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                            torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    c = torch.from_numpy(sprite.screen).float()
    r = torch.from_numpy(sprite.radius).float().clamp(min=0.5)[:, None, None]
    u = (xs[None] - c[:, 0, None, None]) / r
    v = (ys[None] - c[:, 1, None, None]) / r
    return _inside(sprite.shape, u, v).numpy()
