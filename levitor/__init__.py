"""levitor: 3D-trajectory-controlled image-to-video (LeviTor), notebook first."""

__version__ = "0.1.0"
