"""What the tools add to mmengine's Runner so that a killed run loses nothing and leaves nothing
running."""
from .checkpoint_hook import ATOMIC_BACKEND, AtomicCheckpointHook, AtomicLocalBackend
from .runner import build_runner, use_atomic_checkpoints
from .workers import EndWithParent, end_workers_with_parent, set_parent_death_signal

__all__ = ['ATOMIC_BACKEND', 'AtomicCheckpointHook', 'AtomicLocalBackend', 'EndWithParent',
           'build_runner', 'end_workers_with_parent', 'set_parent_death_signal',
           'use_atomic_checkpoints']
