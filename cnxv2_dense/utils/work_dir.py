"""The work dir of a training run: a new run never overwrites the checkpoints of an earlier one."""
import os
from pathlib import Path
from typing import List

from mmengine.config import Config


def earlier_checkpoints(cfg: Config) -> List[Path]:
    """Checkpoints an earlier run left where this run would write its own.

    That is every ``*.pth`` and ``last_checkpoint`` in the work dir, and the ``*.pth`` in the
    checkpoint hook's ``out_dir`` when the config sets one on a local disk (mmengine then saves
    to ``out_dir/<work dir name>``).
    """
    folders = [Path(cfg.work_dir)]
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    out_dir = hook.get('out_dir')
    if out_dir is not None and '://' not in str(out_dir):
        folders.append(Path(out_dir) / Path(str(cfg.work_dir).rstrip(os.sep)).name)
    found = [Path(cfg.work_dir) / 'last_checkpoint']
    for folder in folders:
        found += sorted(folder.glob('*.pth'))
    return [path for path in found if path.exists()]


def refuse_to_overwrite(cfg: Config, overwrite: bool = False, tool: str = 'tools/train.py'
                        ) -> None:
    """Stop before a new run overwrites the checkpoints of an earlier one in its work dir.

    A run that resumes (``cfg.resume``) continues the earlier one and may write there; so may
    one started with ``--overwrite``.

    Args:
        cfg (Config): The run's config, ``work_dir`` resolved.
        overwrite (bool): The user asked to overwrite. Defaults to False.
        tool (str): The command to name in the message. Defaults to ``'tools/train.py'``.

    Raises:
        SystemExit: The work dir holds checkpoints; the message names them and the three ways on.
    """
    if cfg.get('resume', False) or overwrite:
        return
    found = earlier_checkpoints(cfg)
    if not found:
        return
    names = ', '.join(str(path) for path in found[:5]) + (' ...' if len(found) > 5 else '')
    raise SystemExit(
        f'error: {tool}: the work dir {cfg.work_dir} already holds checkpoints of an earlier run '
        f'({names}); a new run there would overwrite them. Choose one:\n'
        f'  --resume              continue the earlier run from its last checkpoint\n'
        f'  --work-dir NEW_DIR    start a separate run and keep the earlier one\n'
        f'  --overwrite           start again here; checkpoints with the same names are replaced')
