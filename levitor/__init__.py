"""levitor: 3D-trajectory-controlled image-to-video (LeviTor), notebook first."""

__version__ = "0.1.0"

from levitor import _notices  # noqa: F401,E402  (drops two library notices that are only noise here)
