"""Files a config or a command line names that are not there, found before anything is built.

A missing pretrained checkpoint (``init_cfg=dict(type='Pretrained', checkpoint=...)``) or
``load_from`` otherwise fails when the model is initialised, after the data are loaded and the
work dir is written; a missing config or checkpoint given to ``tools/infer.py`` only after the
other inputs were checked.
"""
import os.path as osp
from typing import Iterator, List, Tuple


def _checkpoint_entries(node, key: str) -> Iterator[Tuple[str, str]]:
    """(config key, path) of every ``checkpoint`` inside an ``init_cfg`` under ``node``."""
    if isinstance(node, dict):
        for name, value in node.items():
            child = f'{key}.{name}' if key else str(name)
            if name == 'init_cfg':
                for index, init in enumerate(value if isinstance(value, list) else [value]):
                    if isinstance(init, dict) and isinstance(init.get('checkpoint'), str):
                        where = child + (f'[{index}]' if isinstance(value, list) else '')
                        yield f'{where}.checkpoint', init['checkpoint']
            else:
                yield from _checkpoint_entries(value, child)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _checkpoint_entries(value, f'{key}[{index}]')


def missing_checkpoint_files(cfg, init_cfg: bool = True) -> List[str]:
    """One line per local checkpoint path in ``model`` (``init_cfg``) or ``load_from`` that does
    not exist. URLs and ``scheme://`` paths are left to their loaders.

    Args:
        cfg (mmengine.Config): The config.
        init_cfg (bool): Check the pretrained checkpoints of ``init_cfg`` too (training
            initialises the model from them; testing loads ``load_from`` only). Defaults to True.
    """
    entries = list(_checkpoint_entries(cfg.get('model'), 'model')) if init_cfg else []
    if isinstance(cfg.get('load_from'), str):
        entries.append(('load_from', cfg.load_from))
    return [f'{key}: {path} does not exist; give the path of the checkpoint (or a URL)'
            for key, path in entries if '://' not in path and not osp.exists(path)]


def missing_file(path: str, what: str, fix: str, urls: bool = True) -> List[str]:
    """One line when the file ``path`` (a command-line argument) is not there, else none.

    Args:
        path (str): The file.
        what (str): What it is, e.g. ``'checkpoint'``.
        fix (str): What to give instead.
        urls (bool): ``path`` may be a URL or a ``scheme://`` path, left to its loader. Defaults
            to True.

    Returns:
        list[str]: ``['<path>: the <what> does not exist; <fix>']`` or ``[]``.
    """
    if (urls and '://' in path) or osp.isfile(path):
        return []
    return [f'{path}: the {what} does not exist; {fix}']
