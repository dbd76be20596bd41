"""Build a config's model for export and load a trained checkpoint into it, every tensor checked.

mmdet's ``init_detector`` and mmseg's ``init_model`` load with ``strict=False``: a checkpoint of
another arch or another number of classes loads partly, with a warning, and the exported model
is then silently wrong. Here every key and shape must match before anything is exported.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from mmengine.config import Config
from torch import nn

from ..checkpoints import read_checkpoint
from ..utils import allow_mmengine_checkpoints


def build_model(cfg: Config) -> nn.Module:
    """The config's model, built by its toolbox's registry, in eval mode, weights not initialised
    (the checkpoint replaces them; a ``Pretrained`` init_cfg is not downloaded)."""
    from mmengine.registry import init_default_scope
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    model.cfg = cfg  # mmdet / mmseg's init_* do the same; predict helpers read it
    return model.eval()


def read_trained_checkpoint(checkpoint: Union[str, Path]
                            ) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """The model weights of a checkpoint written by ``tools/train.py`` (or a plain state dict),
    read once and safely (weights only), and its ``meta['dataset_meta']`` (the classes and
    palette the model was trained with, which mmdet's / mmseg's ``init_*`` give the model), or
    ``{}``."""
    allow_mmengine_checkpoints()
    obj = read_checkpoint(checkpoint)
    state = obj.get('state_dict', obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise ValueError(f'{checkpoint} holds a {type(state).__name__}, not model weights')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()
             if isinstance(v, torch.Tensor)}
    meta = obj.get('meta') if isinstance(obj, dict) else None
    dataset_meta = meta.get('dataset_meta') if isinstance(meta, dict) else None
    return state, dict(dataset_meta) if isinstance(dataset_meta, dict) else {}


def config_metainfo(cfg: Config, key: str) -> Optional[Any]:
    """``metainfo[key]`` (``classes``, ``palette``) of the config's test dataset, else of its
    val dataset; None if neither gives it."""
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        value = (dataset.get('metainfo') or {}).get(key)
        if value is not None:
            return value
    return None


def checkpoint_fit_problems(model: nn.Module, state: Dict[str, torch.Tensor], config: str,
                            checkpoint: str, max_listed: int = 5) -> List[str]:
    """One line per way the checkpoint does not fit the model (keys missing, unexpected, shapes).

    Args:
        model (nn.Module): The config's model.
        state (dict): The checkpoint's weights (:func:`read_trained_checkpoint`).
        config (str): The config file, for the messages.
        checkpoint (str): The checkpoint file, for the messages.
        max_listed (int): Keys named per kind of problem. Defaults to 5.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    fix = (f'export with the config {checkpoint} was trained with (it is stored in the work dir '
           'beside the checkpoint)')
    problems = []
    for what, keys in (('has tensors of other shapes than the model (checkpoint vs model)',
                        mismatched),
                       ('lacks tensors the model has', missing),
                       ('has tensors the model does not have', unexpected)):
        if keys:
            more = f' and {len(keys) - max_listed} more' if len(keys) > max_listed else ''
            problems.append(f'{checkpoint}: does not fit {config}: it {what}: '
                            f'{", ".join(keys[:max_listed])}{more}; {fix}')
    return problems


def load_exactly(model: nn.Module, state: Dict[str, torch.Tensor]) -> nn.Module:
    """Load weights that :func:`checkpoint_fit_problems` found fitting (strict)."""
    model.load_state_dict(state, strict=True)
    return model.eval()
