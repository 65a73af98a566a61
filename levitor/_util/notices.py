"""Two library notices that are only noise in levitor, dropped at the loggers that make them.

Filters sit on the emitting loggers (which exist before the libraries are imported), so they hold whatever
levitor module, or user code, imports transformers or diffusers first.
"""

from __future__ import annotations

import logging


class _Drop(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


# transformers says, at the first import of CLIPImageProcessor, that torchvision is missing and it falls back to
# its PIL processor: that is the intended setup here (torchvision can't be installed beside CPU torch).
logging.getLogger("transformers.utils.import_utils").addFilter(_Drop("requires torchvision"))
# diffusers 0.42's ModelMixin.to warns on every dtype cast that modules "should be kept in float32: []" (its test
# `fp32_modules is not None` is always true), e.g. twice per generation for the VAE's upcast. With an empty list
# there is nothing to keep; a model that does list modules still warns.
logging.getLogger("diffusers.models.modeling_utils").addFilter(_Drop("should be kept in float32: []"))
