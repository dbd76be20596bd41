"""mmengine's CheckpointHook, made safe against a kill at any moment.

mmengine 0.10 writes a checkpoint with ``open(path, 'wb')`` and ``last_checkpoint`` with
``open(path, 'w')``, and with ``max_keep_ckpts`` it deletes the oldest checkpoint *before* writing
the new one (with ``save_best``, the previous best one). A run killed while saving (OOM killer,
preemption) can therefore leave a truncated ``epoch_N.pth``, an empty ``last_checkpoint``, or --
with ``max_keep_ckpts=1`` -- no checkpoint at all, so ``--resume`` has nothing to start from.

:class:`AtomicCheckpointHook` keeps every behaviour and argument of ``CheckpointHook`` and changes
only how files reach the disk:

- checkpoints on a local disk are written to a temporary file and renamed
  (:class:`AtomicLocalBackend`, used unless the config names its own ``backend_args``);
- ``last_checkpoint`` is rewritten the same way, after its checkpoint is complete;
- the checkpoint that ``max_keep_ckpts`` retires is deleted only after the new one and
  ``last_checkpoint`` are in place;
- the previous ``best_*.pth`` of ``save_best`` is deleted only after the new best one is in
  place.

It also has every process hand its random states to :class:`RandomStateHook` (when the run has
one) before saving, a step all processes take together.
"""
import os.path as osp
from pathlib import Path
from typing import Dict, Optional, Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from ..registry import HOOKS
from ..utils.atomic_file import remove_partial_files, write_bytes_atomically, write_text_atomically
from .random_state_hook import RandomStateHook

ATOMIC_BACKEND = 'cnxv2_dense_atomic_local'
LAST_CHECKPOINT = 'last_checkpoint'  # the file mmengine's --resume reads in the work dir


class AtomicLocalBackend(LocalBackend):
    """mmengine's local-disk backend whose writes replace the target in one step."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        write_bytes_atomically(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        write_text_atomically(obj, filepath, encoding=encoding)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def _is_local(path: Union[str, Path]) -> bool:
    return '://' not in str(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a half-written checkpoint or ``last_checkpoint``.

    Takes exactly ``CheckpointHook``'s arguments. The tools (``tools/train.py``,
    ``tools/pretrain_fcmae.py``) put it in place of the config's ``CheckpointHook``; a config can
    also name it: ``default_hooks = dict(checkpoint=dict(type='cnxv2_dense.AtomicCheckpointHook',
    interval=1))``.
    """

    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self.backend_args is None and self.file_client_args is None and _is_local(out_dir):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)
        if is_main_process():
            # Temporary files of a run killed while saving (only this run writes here).
            for folder in {runner.work_dir, self.out_dir}:
                if _is_local(folder):
                    for leftover in remove_partial_files(folder):
                        runner.logger.info(f'Removed {leftover}, a checkpoint a killed run was '
                                           'writing when it stopped.')

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        retired = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            # (the same step may come twice in one epoch: the periodic and the best checkpoint)
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                retired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        for hook in runner.hooks:  # every process's random states, not only the main one's
            if isinstance(hook, RandomStateHook):
                hook.gather(runner)
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args,
            save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)

        if not is_main_process():  # only the main process writes files here
            return
        write_text_atomically(str(self.last_ckpt), osp.join(runner.work_dir, LAST_CHECKPOINT))
        # NOTE: only now that the new checkpoint and its pointer are complete. A kill between
        # the two steps leaves one checkpoint more on disk than max_keep_ckpts, never one less.
        if retired is not None:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(retired))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are folders
                self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        # NOTE: mmengine deletes the previous best checkpoint, then writes the new one. Hiding
        # the previous paths from it turns its deletion off; they are deleted here, once the
        # new best checkpoints (and the periodic one it saves again after them) are complete.
        if not self.save_best:
            return
        previous: Dict[str, Optional[str]] = (
            {'': self.best_ckpt_path} if len(self.key_indicators) == 1
            else dict(self.best_ckpt_path_dict))
        self._set_best_paths({key: None for key in previous})
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            current = self._best_paths()
            # an indicator that did not improve keeps its previous best checkpoint
            self._set_best_paths({key: current[key] or previous[key] for key in previous})
        if not is_main_process():
            return
        kept = set(self._best_paths().values())
        for path in previous.values():
            if path is None or path in kept:
                continue
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are folders
                self.file_backend.rmtree(path)
            else:
                continue
            runner.logger.info(f'The previous best checkpoint {path} is removed')

    def _best_paths(self) -> Dict[str, Optional[str]]:
        """The best checkpoint of each key indicator ('' when there is one indicator)."""
        if len(self.key_indicators) == 1:
            return {'': self.best_ckpt_path}
        return dict(self.best_ckpt_path_dict)

    def _set_best_paths(self, paths: Dict[str, Optional[str]]) -> None:
        if len(self.key_indicators) == 1:
            self.best_ckpt_path = paths['']
        else:
            self.best_ckpt_path_dict.update(paths)
