"""Comparing float outputs of models that were built or loaded separately.

Equal weights do not give bit-equal outputs everywhere: CPU kernels pick other code paths for tensors that were
allocated differently, and that differs between CPUs (a model and its save/load copy differed at 1e-7 on one
AMD EPYC while being bit-equal on other machines). Such outputs are compared with :func:`assert_same_output`;
bit-exact checks are kept for integers and for the same computation run twice.
"""

from __future__ import annotations

import numpy as np
import torch

# float32 rounding is ~6e-8 relative; a different summation order over a tiny UNet's few hundred terms per output
# gives a few ulps, so 1e-5 relative (and 1e-6 absolute near zero) still catches any real difference: a wrong
# weight, a skipped block or a swapped input moves the outputs by 1e-3 or more
RTOL, ATOL = 1e-5, 1e-6


def assert_same_output(actual, expected, rtol: float = RTOL, atol: float = ATOL, msg: str | None = None) -> None:
    """Tensors, arrays, or (nested) tuples/lists of them, equal up to float rounding."""
    if isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), msg
        for a, e in zip(actual, expected):
            assert_same_output(a, e, rtol, atol, msg)
        return
    torch.testing.assert_close(torch.as_tensor(np.asarray(actual) if not isinstance(actual, torch.Tensor)
                                               else actual),
                               torch.as_tensor(np.asarray(expected) if not isinstance(expected, torch.Tensor)
                                               else expected),
                               rtol=rtol, atol=atol, msg=msg)
