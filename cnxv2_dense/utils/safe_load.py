"""Let mmengine resume from its own checkpoints under ``torch.load(weights_only=True)``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``; mmengine 0.10.x checkpoints
carry the runner's message hub (``HistoryBuffer`` objects holding numpy arrays), which the
weights-only unpickler rejects, so ``--resume`` fails. Rather than loading with
``weights_only=False`` (which would run arbitrary code from an untrusted file) we allow-list the
few classes these checkpoints contain. Nothing else becomes loadable.
"""
from typing import List

import numpy as np
import torch


def mmengine_checkpoint_globals() -> List[object]:
    """The classes and functions an mmengine training checkpoint needs to unpickle."""
    from mmengine.logging.history_buffer import HistoryBuffer
    try:  # numpy arrays inside HistoryBuffer; numpy 2 moved the module
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    dtype_classes = [type(np.dtype(name)) for name in
                     ('float64', 'float32', 'float16', 'int64', 'int32', 'int8', 'uint8', 'bool')]
    return [HistoryBuffer, _reconstruct, np.ndarray, np.dtype, *dtype_classes,
            np.float64, np.float32, np.int64, np.int32, np.bool_]


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint classes for weights-only loading (idempotent)."""
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:  # torch < 2.4 has no weights-only default to satisfy
        add_safe_globals(mmengine_checkpoint_globals())
