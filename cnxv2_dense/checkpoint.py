"""Safe loading of pretrained weights into the ConvNeXt V2 backbone.

Checkpoints are pickles and unpickling can run code, so they are read with
``torch.load(weights_only=True)`` (or as ``.safetensors``); a file that needs arbitrary objects is
refused, never retried unsafely.
"""
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

STATE_DICT_KEYS = ('state_dict', 'model', 'module', 'model_ema', 'state_dict_ema')


def read_checkpoint(path: Union[str, Path]) -> dict:
    """Read a checkpoint file safely and return the object stored in it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Checkpoint not found: {path}')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device='cpu')
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f'{path} is not a readable .safetensors file: {err}') from err
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except torch.serialization.pickle.UnpicklingError as err:
        raise ValueError(
            f'{path} holds Python objects other than tensors and plain containers, and loading '
            'it would run arbitrary code, so it was refused. If you trust the file, re-save just '
            'its weights: torch.save(torch.load(p, weights_only=False)["state_dict"], out).'
            f' (torch said: {str(err).splitlines()[0]})') from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f'{path} is not a readable PyTorch checkpoint (truncated or another '
                         f'kind of file): {err}') from err


def extract_state_dict(obj: dict) -> Dict[str, torch.Tensor]:
    """Return the tensor dict inside a checkpoint object (``state_dict``/``model`` or itself)."""
    if not isinstance(obj, dict):
        raise ValueError(f'A checkpoint must be a dict, got {type(obj).__name__}')
    for key in STATE_DICT_KEYS:
        if key in obj and isinstance(obj[key], dict):
            return obj[key]
    return obj


def load_pretrained_backbone(backbone: nn.Module, checkpoint: Union[str, Path],
                             prefix: Optional[str] = None) -> None:
    """Load backbone weights from ``checkpoint`` into ``backbone``, reporting what happened.

    Args:
        backbone (nn.Module): The backbone to fill.
        checkpoint (str | Path): A checkpoint saved from this backbone, or from a detector /
            segmentor holding it under ``backbone.``.
        prefix (str, optional): Keep only keys starting with this prefix, stripped. Defaults to
            ``'backbone.'`` when such keys exist.
    """
    state = extract_state_dict(read_checkpoint(checkpoint))
    if prefix is None and any(k.startswith('backbone.') for k in state):
        prefix = 'backbone.'
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = backbone.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(f'Shape mismatch for {key}: checkpoint {tuple(value.shape)} vs '
                             f'model {tuple(own[key].shape)}; is the checkpoint for another arch?')
    result = backbone.load_state_dict(state, strict=False)
    logger = MMLogger.get_current_instance()
    print_log(f'Loaded {len(state) - len(result.unexpected_keys)} tensors from {checkpoint}; '
              f'missing: {result.missing_keys or "none"}; '
              f'unexpected: {result.unexpected_keys or "none"}', logger=logger)
