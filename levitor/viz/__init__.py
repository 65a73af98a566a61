"""Pictures and videos: overlays of instances and control points, contact sheets, the conditioning channels,
loss curves, and MP4/GIF writing."""

from levitor.viz.pictures import (
    colormap,
    conditioning_picture,
    contact_sheet,
    depth_picture,
    instance_colors,
    loss_curve,
    overlay,
    read_loss_log,
)
from levitor.viz.video import write_video

__all__ = ["colormap", "conditioning_picture", "contact_sheet", "depth_picture", "instance_colors", "loss_curve",
           "overlay", "read_loss_log", "write_video"]
