"""What the tools add to mmengine's Runner: a killed run loses nothing and leaves nothing running,
a resumed one ends as an uninterrupted one, and COCO files without `info` are evaluated."""
from .buffers_hook import AverageBuffersHook
from .checkpoint_hook import ATOMIC_BACKEND, AtomicCheckpointHook, AtomicLocalBackend
from .random_state_hook import RandomStateHook, get_random_states, set_random_states
from .runner import (accept_coco_files_without_info, average_buffers, build_runner,
                     save_random_states, use_atomic_checkpoints)
from .workers import (EndWithParent, end_with_launcher, end_workers_with_parent,
                      set_parent_death_signal)

__all__ = ['ATOMIC_BACKEND', 'AtomicCheckpointHook', 'AtomicLocalBackend', 'AverageBuffersHook',
           'EndWithParent', 'RandomStateHook', 'accept_coco_files_without_info', 'average_buffers',
           'build_runner', 'end_with_launcher',
           'end_workers_with_parent', 'get_random_states', 'save_random_states',
           'set_parent_death_signal', 'set_random_states', 'use_atomic_checkpoints']
