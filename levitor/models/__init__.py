"""Models: the SVD ControlNet, the SVD UNet that takes its residuals, and loading of the release's weights."""

from levitor.models.controlnet_svd import ControlNetSVD, ControlNetSVDOutput
from levitor.models.convert import convert_official_checkpoint, load_controlnet
from levitor.models.unet_svd import ControlledUNetSVD

__all__ = ["ControlNetSVD", "ControlNetSVDOutput", "ControlledUNetSVD", "convert_official_checkpoint",
           "load_controlnet"]
