"""Let mmengine resume from its own checkpoints under ``torch.load(weights_only=True)``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``; mmengine 0.10.x checkpoints
carry the runner's message hub (``HistoryBuffer`` objects holding numpy arrays, plus references
to ``HistoryBuffer.min`` etc. pickled as ``getattr(HistoryBuffer, 'min')``), which the
weights-only unpickler rejects, so ``--resume`` fails. Rather than loading with
``weights_only=False`` (which would run arbitrary code from an untrusted file) we allow-list the
few classes these checkpoints contain, and in place of ``getattr`` a restricted version that
only resolves HistoryBuffer's statistics methods. Nothing else becomes loadable.
"""
import pickle
from typing import Any, List, Tuple, Union

import numpy as np
import torch

# The statistics methods HistoryBuffer registers; nothing else may be fetched by name.
HISTORY_BUFFER_METHODS = frozenset({'min', 'max', 'mean', 'current'})


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` limited to ``HistoryBuffer.<statistics method>``; anything else is refused."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({obj!r}, {name!r}) while loading a checkpoint: only '
        f'HistoryBuffer.{{{", ".join(sorted(HISTORY_BUFFER_METHODS))}}} are allowed.')


def mmengine_checkpoint_globals() -> List[Union[object, Tuple[object, str]]]:
    """The classes and functions an mmengine training checkpoint needs to unpickle."""
    from mmengine.logging.history_buffer import HistoryBuffer
    try:  # numpy arrays inside HistoryBuffer; numpy 2 moved the module
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(name)) for name in
                     ('float64', 'float32', 'float16', 'int64', 'int32', 'int8', 'uint8', 'bool')]
    return [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes,
            (history_buffer_getattr, '__builtin__.getattr'),
            (history_buffer_getattr, 'builtins.getattr')]


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint classes for weights-only loading (idempotent)."""
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:  # torch < 2.4 has no weights-only default to satisfy
        add_safe_globals(mmengine_checkpoint_globals())
