"""Re-render the scene per frame: z-buffer point splatting in pure PyTorch.

Every pixel of a moving object is a 3D point (see :mod:`levitor.motion.lift`); the rest of the image is a
static layer that stays where it is (or moves with the camera path). Per frame we splat the moving points
with a z-buffer (``scatter_reduce`` amin: the nearest point wins a pixel) and composite them over the static
layer where they are at least as near as what is there (a moved object at the depth of the surface behind it
is on it, not behind it). The moved objects' own first-frame pixels hold nothing in front of anything: the
object left them, so it is always drawn over its own place (frame 0 shows every object where it is). The result
is an instance-id map (occlusion correct), a depth map and a colour preview per frame.

Pixels a moving object uncovers take the instance id most common in a strip just above the object's
top-most first-frame pixel (the hole is controlled as part of what surrounds it), and depth and colour
inpainted from their surroundings (push-pull). These are levitor's rules; :mod:`levitor.motion.release_render`
has the release's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F_

from levitor._util.jit import numba_on
from levitor.depth import FAR_DEPTH
from levitor.motion import kernels
from levitor.motion.lift import MIN_Z, move
from levitor.scene import Intrinsics

BACKENDS = ("auto", "numba", "torch", "pytorch3d")
HOLE = -1  # instance id of a pixel that nothing covers (before hole filling)
MAX_FOOTPRINT = 6  # a splat covers at most 6x6 pixels: enough for objects magnified up to 6x
STRIP_ROWS = 5  # the release's hole-fill strip: up to 5 rows above the object's top ...
STRIP_HALF_WIDTH = 5  # ... and 10 columns around its top-most pixel


@dataclass
class Mover:
    """A group of pixels that moves together along one per-frame track."""

    pixels: torch.Tensor  # (N, 2) float (x, y) in frame 0
    depth: torch.Tensor  # (N,) scene depth of each pixel
    instance: torch.Tensor  # (N,) int64 instance id of each pixel
    color: torch.Tensor  # (N, 3) uint8
    track: torch.Tensor  # (F, 3) per-frame (x, y, depth) of the path; row 0 is the reference


@dataclass
class RenderResult:
    """Per-frame re-rendered scene."""

    instance: torch.Tensor  # (F, H, W) int64; 0 = no control
    depth: torch.Tensor  # (F, H, W) float32 scene depth
    color: torch.Tensor  # (F, H, W, 3) uint8 preview frames

    @property
    def num_frames(self) -> int:
        return int(self.instance.shape[0])

    def areas(self, ids: list[int] | torch.Tensor) -> torch.Tensor:
        """(F, len(ids)) pixel count of each instance id per frame."""
        ids = torch.as_tensor(ids, dtype=torch.int64)
        counts = _bincount_per_frame(self.instance, int(ids.max()) + 1 if len(ids) else 1)
        return counts[:, ids]


@dataclass
class Splat:
    """The pixels a z-buffer splat reached: one entry per covered pixel, holding its nearest point."""

    pixel: torch.Tensor  # (T,) int64 flat index f * H * W + y * W + x
    point: torch.Tensor  # (T,) int64 index of the winning point
    z: torch.Tensor  # (T,) float32 its depth
    shape: tuple[int, int, int]  # (F, H, W)

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """zbuf (F, H, W) (inf where empty) and winner (F, H, W) (-1 where empty)."""
        n = self.shape[0] * self.shape[1] * self.shape[2]
        zbuf = torch.full((n,), float("inf")).index_put_((self.pixel,), self.z)
        win = torch.full((n,), -1, dtype=torch.int64).index_put_((self.pixel,), self.point)
        return zbuf.view(self.shape), win.view(self.shape)


def splat(
    xy: torch.Tensor,
    z: torch.Tensor,
    frame: torch.Tensor,
    num_frames: int,
    height: int,
    width: int,
    footprint: torch.Tensor | int = 1,
    use_kernel: bool = True,
) -> Splat:
    """Z-buffer splat points into ``num_frames`` images.

    xy: (M, 2) float pixel coordinates (x, y); z: (M,) depth (smaller = nearer, > 0); frame: (M,) int64 frame
    of each point; footprint: (M,) or scalar side length s of the square of pixels each point covers
    (1 = the pixel containing it; s > 1 covers the s x s pixels around it, filling the gaps of a magnified
    object). Among equally near points the later index wins. ``use_kernel``: use the compiled loop of
    :mod:`levitor.motion.kernels` when numba is installed (same result, several times faster).
    """
    m = xy.shape[0]
    n_pix = num_frames * height * width
    shape = (num_frames, height, width)
    if m == 0:
        none = torch.zeros(0, dtype=torch.int64)
        return Splat(none, none.clone(), torch.zeros(0), shape)
    footprint = torch.as_tensor(footprint, dtype=torch.int64).expand(m)
    if use_kernel and numba_on():
        zb, win = kernels.zbuffer(xy[:, 0].numpy(), xy[:, 1].numpy(), z.numpy(), frame.numpy(),
                                   footprint.contiguous().numpy(), num_frames, height, width)
        hit = torch.from_numpy(np.flatnonzero(win >= 0))
        return Splat(hit, torch.from_numpy(win)[hit], torch.from_numpy(zb)[hit], shape)
    xy = xy.to(torch.float32)  # which pixel a point falls in is decided in float32, as the compiled loop does
    # one key per point: the depth's float bits (monotonic for positive floats) above the inverted point
    # index, so a single amin finds the nearest point and, among equals, the latest one
    z32 = z.to(torch.float32).clamp(min=torch.finfo(torch.float32).tiny)
    point_key = (z32.view(torch.int32).to(torch.int64) << 32) | ((2**32 - 1) - torch.arange(m))
    good = z > 0
    flats, pkeys = [], []
    for s in range(1, int(footprint.max()) + 1):
        sel = torch.nonzero((footprint == s) & good).squeeze(1)
        if sel.numel() == 0:
            continue
        # top-left pixel of the s x s block centred on the point (s = 1: the pixel containing it)
        p_xy = xy[sel]
        x0 = torch.floor(p_xy[:, 0] + (0.5 - (s - 1) / 2.0)).to(torch.int64)
        y0 = torch.floor(p_xy[:, 1] + (0.5 - (s - 1) / 2.0)).to(torch.int64)
        inside = (x0 >= 0) & (x0 <= width - s) & (y0 >= 0) & (y0 <= height - s)
        p_f, p_key = frame[sel], point_key[sel]
        base = (p_f * height + y0) * width + x0
        if s == 1:
            flats.append(base[inside])
            pkeys.append(p_key[inside])
            continue
        dy, dx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        offsets = (dy * width + dx).reshape(-1)
        # blocks fully inside the image: one pass, no per-pixel bounds checks
        flats.append((base[inside, None] + offsets).reshape(-1))
        pkeys.append(p_key[inside, None].expand(-1, s * s).reshape(-1))
        edge = torch.nonzero(~inside).squeeze(1)  # blocks cut by the border: check each pixel
        if edge.numel():
            ex = (x0[edge, None] + dx.reshape(-1)).reshape(-1)
            ey = (y0[edge, None] + dy.reshape(-1)).reshape(-1)
            ok = (ex >= 0) & (ex < width) & (ey >= 0) & (ey < height)
            ef = p_f[edge, None].expand(-1, s * s).reshape(-1)
            flats.append(((ef * height + ey) * width + ex)[ok])
            pkeys.append(p_key[edge, None].expand(-1, s * s).reshape(-1)[ok])
    flat, pkey = torch.cat(flats), torch.cat(pkeys)
    keys = torch.full((n_pix,), torch.iinfo(torch.int64).max, dtype=torch.int64)
    keys.scatter_reduce_(0, flat, pkey, reduce="amin", include_self=True)
    won = torch.nonzero(keys[flat] == pkey).squeeze(1)  # exactly one entry per covered pixel
    flat, pkey = flat[won], pkey[won]
    point = (2**32 - 1) - (pkey & (2**32 - 1))
    zw = (pkey >> 32).to(torch.int32).view(torch.float32)
    return Splat(flat, point, zw, shape)


@dataclass
class StaticLayer:
    """What stays put: the first frame without the moving objects, their holes filled. Paths don't change it."""

    instance: torch.Tensor  # (H, W) int64
    depth: torch.Tensor  # (H, W) float32, holes inpainted (the depth map the control reads)
    color: torch.Tensor  # (H, W, 3) uint8
    vacated: torch.Tensor | None = None  # (H, W) bool: the moved objects' own pixels; nothing there hides a mover

    def front(self) -> torch.Tensor:
        """(H, W) depth of what is in front at each pixel for occlusion: inf where a mover left."""
        if self.vacated is None:
            return self.depth
        return torch.where(self.vacated, torch.full_like(self.depth, float("inf")), self.depth)


def static_layer(image: torch.Tensor, depth: torch.Tensor, instance: torch.Tensor, movers: list[Mover]) -> StaticLayer:
    """Remove the movers from the first frame and fill what they uncover.

    Instance ids of the holes follow the release's strip rule; depth and colour are inpainted.
    """
    H, W = instance.shape
    moving = torch.zeros(H, W, dtype=torch.bool)
    for mv in movers:
        moving[mv.pixels[:, 1].long(), mv.pixels[:, 0].long()] = True
    inst = instance.clone()
    for mv in movers:
        inst[mv.pixels[:, 1].long(), mv.pixels[:, 0].long()] = _hole_fill_id(instance, mv, moving)
    valid = ~moving
    d = inpaint(depth[None].float(), valid, empty=FAR_DEPTH)[0]
    c = inpaint(image.permute(2, 0, 1).float(), valid).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    return StaticLayer(inst, d, c.contiguous(), moving)


def render(
    image: torch.Tensor,
    depth: torch.Tensor,
    instance: torch.Tensor,
    movers: list[Mover],
    K: Intrinsics,
    num_frames: int,
    camera_track: torch.Tensor | None = None,
    static: StaticLayer | None = None,
    backend: str = "auto",
) -> RenderResult:
    """Render the moved scene for ``num_frames`` frames.

    image: (H, W, 3) uint8; depth: (H, W) scene depth; instance: (H, W) int64 first-frame instance map
    (0 = uncontrolled). ``movers`` are the selected objects; their pixels are removed from the static layer
    and splatted per frame. ``camera_track`` (F, 3), if given, moves the static layer the same way.
    ``static`` is :func:`static_layer` of the same inputs, if the caller kept it from an earlier render.
    ``backend``: "numba" (a compiled loop; "auto" picks it when numba is installed), "torch" (vectorised,
    the same result), or "pytorch3d" (its point rasterizer with the release's splat radius, when installed;
    slow on CPU).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "numba" if numba_on() else "torch"
    H, W = instance.shape
    static = static or static_layer(image, depth, instance, movers)
    moving_camera = camera_track is not None and moves(camera_track)
    if moving_camera:
        st_inst, st_depth, st_color, st_front = render_static_with_camera(
            static.instance, static.depth, static.color, K, camera_track, num_frames, static.front()
        )
    else:
        st_inst, st_depth, st_color = static.instance[None], static.depth[None], static.color[None]
        st_front = static.front()[None]
    if backend == "numba" and movers:  # the steps below fused in one compiled loop, writing every pixel
        out = RenderResult(torch.empty(num_frames, H, W, dtype=torch.int64), torch.empty(num_frames, H, W),
                           torch.empty(num_frames, H, W, 3, dtype=torch.uint8))
        kernels.render_movers(
            torch.cat([mv.pixels[:, 0] for mv in movers]).float().numpy(),
            torch.cat([mv.pixels[:, 1] for mv in movers]).float().numpy(),
            torch.cat([mv.depth for mv in movers]).float().numpy(),
            torch.cat([torch.full((len(mv.pixels),), j, dtype=torch.int64) for j, mv in enumerate(movers)]).numpy(),
            torch.stack([mv.track.float() for mv in movers]).numpy(), K, MIN_Z, MAX_FOOTPRINT,
            torch.cat([mv.instance for mv in movers]).numpy(), torch.cat([mv.color for mv in movers]).numpy(),
            st_inst.contiguous().numpy(), st_depth.float().contiguous().numpy(), st_color.contiguous().numpy(),
            st_front.float().contiguous().numpy(), out.instance.numpy(), out.depth.numpy(), out.color.numpy(),
        )
        return out
    if not moving_camera:
        st_inst = st_inst.expand(num_frames, H, W).clone()
        st_depth = st_depth.expand(num_frames, H, W).clone()
        st_color = st_color.expand(num_frames, H, W, 3).clone()
        st_front = st_front.expand(num_frames, H, W)
    if not movers:
        return RenderResult(st_inst, st_depth, st_color)

    # the moving points, all objects and frames in one splat
    xy_list, z_list, fp_list = [], [], []
    for mv in movers:
        xy, z = move(mv.pixels.float(), mv.depth.float(), mv.track.float(), K)  # (F, N, 2), (F, N)
        xy_list.append(xy)
        z_list.append(z)
        fp_list.append(footprint(mv.depth.float()[None], z))
    xy = torch.cat(xy_list, dim=1)  # (F, Ntot, 2)
    z = torch.cat(z_list, dim=1)
    fp = torch.cat(fp_list, dim=1)
    n_tot = xy.shape[1]
    frame = torch.arange(num_frames).repeat_interleave(n_tot)
    if backend == "pytorch3d":
        sp = _splat_pytorch3d(xy, z, torch.cat([mv.depth.float() for mv in movers]), H, W)
    else:
        sp = splat(xy.reshape(-1, 2), z.reshape(-1), frame, num_frames, H, W, fp.reshape(-1), use_kernel=False)

    # composite, touching only the pixels the movers reached: a moving point takes a pixel where it is at least
    # as near as what the static layer has in front there
    take = sp.z <= st_front.reshape(-1)[sp.pixel]
    hit, zh = sp.pixel[take], sp.z[take]
    src = sp.point[take] % n_tot  # winner index -> point within a frame
    ids = torch.cat([mv.instance for mv in movers])
    cols = torch.cat([mv.color for mv in movers])
    st_inst.view(-1)[hit] = ids[src]
    st_depth.view(-1)[hit] = zh
    st_color.view(-1, 3)[hit] = cols[src]
    return RenderResult(st_inst, st_depth, st_color)


def _splat_pytorch3d(xy: torch.Tensor, z: torch.Tensor, z0: torch.Tensor, H: int, W: int) -> Splat:
    """The optional pytorch3d backend: its point rasterizer, one point cloud per frame, nearest point kept.

    xy (F, N, 2) pixels, z (F, N) moved depth, z0 (N,) first-frame depth. Points are placed in pytorch3d's NDC as
    the release's camera places them (:func:`levitor.motion.release_raster.pixel_to_ndc`: a pixel (u, v) at
    ((W - 2u) / m, (H - 2v) / m), half a pixel up and left of its centre); a point's radius is the release's,
    max(0.011 - (z - z0), 0.011). levitor's rules then keep the nearest point per pixel.
    """
    from pytorch3d.renderer.points import rasterize_points
    from pytorch3d.structures import Pointclouds

    from levitor.motion.release_raster import BASE_RADIUS, pixel_to_ndc

    F, _, _ = xy.shape
    ndc = torch.from_numpy(pixel_to_ndc(xy[..., 0].double().numpy(), xy[..., 1].double().numpy(), H, W))
    pts = torch.cat([ndc, z[..., None].double()], dim=-1).float()
    radius = torch.clamp(BASE_RADIUS - (z - z0[None]), min=BASE_RADIUS).float()  # (clouds, points), as pytorch3d asks
    idx, zbuf, _ = rasterize_points(Pointclouds(points=list(pts)), image_size=(H, W), radius=radius,
                                    points_per_pixel=1)
    idx = idx[..., 0].reshape(-1)  # packed index f * N + i, -1 where empty
    hit = torch.nonzero(idx >= 0).squeeze(1)
    return Splat(hit, idx[hit].long(), zbuf[..., 0].reshape(-1)[hit].float(), (F, H, W))


def moves(track: torch.Tensor) -> bool:
    """Whether a (F, 3) track ever leaves its first row."""
    return bool((track - track[:1]).abs().max() > 0)


def footprint(z0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Side of the splat square: the magnification z0 / z, rounded up (1 when not magnified)."""
    mag = z0 / z
    return torch.ceil(mag - 1e-6).clamp(1, MAX_FOOTPRINT).to(torch.int64)


def render_static_with_camera(inst, depth, color, K, track, num_frames, front=None):
    """The static layer moved by the camera path; holes it opens are filled from their surroundings. ``front``
    (H, W), the occlusion depth (inf where movers left), moves along; returns it fourth."""
    H, W = inst.shape
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    pix = torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1).double()
    xy, z = move(pix, depth.reshape(-1).double(), track.double(), K)
    fp = footprint(depth.reshape(-1).double()[None], z)
    frame = torch.arange(num_frames).repeat_interleave(H * W)
    zbuf, win = splat(xy.reshape(-1, 2), z.reshape(-1).float(), frame, num_frames, H, W, fp.reshape(-1)).dense()
    hit = win >= 0
    src = win.clamp(min=0) % (H * W)
    out_inst = torch.where(hit, inst.reshape(-1)[src], torch.full_like(src, HOLE))
    out_depth = torch.where(hit, zbuf, torch.zeros_like(zbuf))
    out_color = color.reshape(-1, 3)[src]
    out_inst = fill_nearest(out_inst, hit)
    out_depth = torch.stack([inpaint(out_depth[f][None], hit[f], empty=FAR_DEPTH)[0] for f in range(num_frames)])
    out_color = torch.stack(
        [inpaint(out_color[f].permute(2, 0, 1).float(), hit[f]) for f in range(num_frames)]
    ).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # callers write through views
    if front is None:
        return out_inst, out_depth, out_color
    vacated = hit & torch.isinf(front.reshape(-1)[src])
    out_front = torch.where(vacated, torch.full_like(out_depth, float("inf")), out_depth)
    return out_inst, out_depth, out_color, out_front


def _hole_fill_id(instance: torch.Tensor, mv: Mover, moving: torch.Tensor) -> int:
    """The id most common just above the object's top-most first-frame pixel (the release's rule)."""
    H, W = instance.shape
    rows, cols = mv.pixels[:, 1].long(), mv.pixels[:, 0].long()
    top = int(rows.min())
    col = int(cols[rows == top].float().median().round())
    r0, c0, c1 = max(0, top - STRIP_ROWS), max(0, col - STRIP_HALF_WIDTH), min(W, col + STRIP_HALF_WIDTH)
    strip_ids = instance[r0:top, c0:c1][~moving[r0:top, c0:c1]]
    if strip_ids.numel() == 0:  # the object touches the top edge: use the ring around it instead
        mask = torch.zeros(H, W, dtype=torch.bool)
        mask[rows, cols] = True
        ring = F_.max_pool2d(mask[None, None].float(), 3, 1, 1)[0, 0].bool() & ~moving
        strip_ids = instance[ring]
    if strip_ids.numel() == 0:
        return 0
    return int(torch.mode(strip_ids).values)


def inpaint(values: torch.Tensor, valid: torch.Tensor, empty: float = 0.0) -> torch.Tensor:
    """Fill invalid pixels from their surroundings (push-pull pyramid). values: (C, H, W); valid: (H, W).
    ``empty``: the value everywhere when nothing is valid (a camera that pans off the whole scene)."""
    if bool(valid.all()):
        return values.clone()
    if not bool(valid.any()):
        return torch.full_like(values, empty)
    w = valid[None].to(values.dtype)
    pyramid = [(values * w, w)]
    while min(pyramid[-1][1].shape[-2:]) > 1:  # push: average the known values down to 1 pixel
        v, wt = pyramid[-1]
        pyramid.append((F_.avg_pool2d(v[None], 2, ceil_mode=True)[0], F_.avg_pool2d(wt[None], 2, ceil_mode=True)[0]))
    v, wt = pyramid[-1]
    filled = v / wt.clamp(min=1e-8)
    # the top stops when one side reaches 1 pixel, so a cell there can still know nothing (a long side whose end is
    # all invalid): it takes the mean of all known values rather than 0
    # (summed in float64: the same float32 mean whatever the thread count splits the sum into)
    mean = (v.double().sum(dim=(-2, -1)) / wt.double().sum(dim=(-2, -1)).clamp(min=1e-8)).to(v.dtype)
    filled = torch.where(wt > 0, filled, mean[:, None, None])
    for v, wt in reversed(pyramid[:-1]):  # pull: where a level knows nothing, take the coarser estimate
        up = F_.interpolate(filled[None], size=v.shape[-2:], mode="bilinear", align_corners=False)[0]
        known = wt.clamp(max=1.0)
        filled = v / wt.clamp(min=1e-8) * known + up * (1 - known)
    return torch.where(valid[None], values, filled)


def fill_nearest(ids: torch.Tensor, valid: torch.Tensor, max_iters: int = 64) -> torch.Tensor:
    """Fill invalid entries of (F, H, W) integer maps by growing the valid ids into them (3x3 steps)."""
    ids = ids.clone()
    valid = valid.clone()
    for _ in range(max_iters):
        if bool(valid.all()):
            break
        shifted = F_.max_pool2d(torch.where(valid, ids + 1, 0)[:, None].float(), 3, 1, 1)[:, 0].long() - 1
        grow = ~valid & (shifted >= 0)
        ids[grow] = shifted[grow]
        valid |= grow
    ids[~valid] = 0
    return ids


def _bincount_per_frame(instance: torch.Tensor, n: int) -> torch.Tensor:
    F = instance.shape[0]
    flat = instance.reshape(F, -1).clamp(min=0)
    n = max(n, int(flat.max()) + 1)
    offs = (torch.arange(F) * n)[:, None]
    return torch.bincount((flat + offs).reshape(-1), minlength=F * n).view(F, n)


def pixels_of(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 2) float (x, y) of a boolean mask's pixels, row-major."""
    m = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
    rows, cols = torch.nonzero(m, as_tuple=True)
    return torch.stack([cols, rows], dim=1).to(torch.float64)
