"""What the tools add to mmengine's Runner so that a killed run loses nothing and leaves nothing
running."""
from .checkpoint_hook import ATOMIC_BACKEND, AtomicCheckpointHook, AtomicLocalBackend
from .runner import build_runner, use_atomic_checkpoints

__all__ = ['ATOMIC_BACKEND', 'AtomicCheckpointHook', 'AtomicLocalBackend', 'build_runner',
           'use_atomic_checkpoints']
