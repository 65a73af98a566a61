"""Plumbing shared by every layer (not public API): image conversion, file I/O with atomic writes, content
hashes, torch threads, library notices, levitor's folders, the numba switch, lazy exports."""
