"""One set of BN running statistics in a distributed run: the checkpoint's, the one every process
validates with.

Without SyncBN (it needs GPUs: torch's ``SyncBatchNorm`` refuses CPU tensors) each process of a
distributed run normalises its BN layers with the statistics of its own part of the batch and
updates its own running statistics from them; mmengine's DDP wrapper does not broadcast buffers
(``broadcast_buffers=False``). The processes' running statistics then drift apart: the checkpoint
holds the main process's, while validation during training runs each process's share of the val
set with that process's statistics -- a score no saved model reproduces.

:class:`AverageBuffersHook` replaces every process's floating-point buffers by their mean over
the processes after each training iteration, before the checkpoint hook saves and before
validation runs. A running mean or variance is a linear recursion of the batch statistics, so
averaging after every iteration gives the mean of the statistics the processes would have
gathered on their own; training itself is unchanged (BN normalises with the statistics of the
batch in training mode). mmengine's ``SyncBuffersHook`` averages at the end of an epoch and
before validation; in an iteration-based schedule that is after the checkpoint of that iteration
was saved, which then still holds the main process's statistics.
"""
from typing import List

import torch
from mmengine.dist import all_reduce_params, is_distributed
from mmengine.hooks import Hook

from ..registry import HOOKS


def floating_buffers(model: torch.nn.Module) -> List[torch.Tensor]:
    """The model's floating-point buffers (BN running mean / variance, ...); integer ones such
    as ``num_batches_tracked`` are equal in every process and left out."""
    return [buffer for buffer in model.buffers() if buffer.is_floating_point()]


@HOOKS.register_module()
class AverageBuffersHook(Hook):
    """Average the floating-point buffers of the model over the processes of a distributed run
    after each training iteration (a no-op in a single process).

    Its priority (``LOW``) runs it after the other hooks of an iteration and before the
    checkpoint hook (``VERY_LOW``). The tools add it to every run; a config can name it:
    ``custom_hooks = [dict(type='cnxv2_dense.AverageBuffersHook')]``.
    """

    priority = 'LOW'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if is_distributed():
            buffers = floating_buffers(runner.model)
            if buffers:
                all_reduce_params(buffers, op='mean')
