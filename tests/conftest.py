import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the network
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_scene():
    from levitor.bundled import bundled_scene

    return bundled_scene()


def make_scene(H=64, W=96, objects=(), depth=0.5, num_frames=6):
    """A flat scene at one depth with rectangular masks: objects = [(x0, y0, x1, y1, depth), ...]."""
    from levitor.scene import Scene

    img = np.full((H, W, 3), 90, np.uint8)
    d = np.full((H, W), depth, np.float32)
    masks = []
    for k, (x0, y0, x1, y1, od) in enumerate(objects):
        m = np.zeros((H, W), bool)
        m[y0:y1, x0:x1] = True
        masks.append(m)
        d[m] = od
        img[m] = (40 * k + 60, 200 - 30 * k, 90)
    return Scene(image=img, depth=d, masks=masks, num_frames=num_frames)
