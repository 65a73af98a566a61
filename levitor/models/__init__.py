"""Models: the SVD ControlNet, the SVD UNet that takes its residuals, and loading of the release's weights."""

import logging

import transformers  # noqa: F401  (sets up its logger, which we filter below)

from levitor.models.controlnet_svd import ControlNetSVD, ControlNetSVDOutput
from levitor.models.convert import convert_official_checkpoint, load_controlnet
from levitor.models.unet_svd import ControlledUNetSVD

__all__ = ["ControlNetSVD", "ControlNetSVDOutput", "ControlledUNetSVD", "convert_official_checkpoint",
           "load_controlnet"]


class _NoTorchvisionNotice(logging.Filter):
    """transformers tells every load that torchvision is missing and it uses its PIL image processor: that is
    the intended setup here (torchvision can't be installed beside CPU torch), so the notice is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


for _handler in logging.getLogger("transformers").handlers:
    _handler.addFilter(_NoTorchvisionNotice())


class _EmptyFp32ModulesNotice(logging.Filter):
    """diffusers 0.42's ModelMixin.to warns on every dtype cast that "modules ... should be kept in float32: []"
    (its test ``fp32_modules is not None`` is always true); with an empty list there is nothing to keep, so the
    notice is dropped. A model that does list modules still warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_EmptyFp32ModulesNotice())

