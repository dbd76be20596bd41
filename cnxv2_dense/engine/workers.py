"""Dataloader workers, and the processes of a distributed run, that end with the process that
started them.

A dataloader worker notices that its parent died only when it next talks to it; a worker blocked
on a full queue never does. After the main process of a run is killed with SIGKILL (what the OOM
killer and cluster preemption send) its workers stay alive, orphaned, holding their memory.
On Linux the kernel can signal a process when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
:class:`EndWithParent` asks for that at the start of each worker, then runs the worker init
function the loader already had (mmengine's seeding).

The ranks of a run started by torchrun (``tools/dist_train.sh``) are its children in the same way:
torchrun stops them when one of them fails, but a torchrun killed with SIGKILL leaves them
training on, orphaned. :func:`end_with_launcher` has each rank ask for the same signal.
"""
import ctypes
import ctypes.util
import os
import signal
import sys
from typing import Callable, Optional

from torch.utils.data import DataLoader

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def set_parent_death_signal(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux only).

    NOTE: the kernel sends it when the parent *thread* that created this process exits. The
    Runner iterates its dataloaders, and so starts their workers, in the main thread, which
    lives as long as the run.

    Args:
        parent_pid (int): The pid of the parent as it was when this process was started. If the
            parent is already gone (it died before this call), this process ends itself.
        sig (int): The signal to receive. Defaults to SIGKILL (a worker cannot block it).

    Returns:
        bool: True where the signal was set, False where the platform has no ``prctl``.
    """
    if not sys.platform.startswith('linux'):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f'prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}')
    if os.getppid() != parent_pid:  # the parent died between our start and the prctl call
        os.kill(os.getpid(), sig)
    return True


class EndWithParent:
    """A dataloader ``worker_init_fn``: the worker ends when the process that made the loader
    dies, then ``init_fn`` (the loader's own worker init, e.g. mmengine's seeding) runs.

    Args:
        init_fn (callable, optional): The worker init function to chain, called with the worker
            id. Defaults to None.
    """

    def __init__(self, init_fn: Optional[Callable[[int], None]] = None) -> None:
        self.init_fn = init_fn
        self.parent_pid = os.getpid()  # the main process: loaders start workers from here

    def __call__(self, worker_id: int) -> None:
        set_parent_death_signal(self.parent_pid)
        if self.init_fn is not None:
            self.init_fn(worker_id)


def end_workers_with_parent(loader: DataLoader) -> DataLoader:
    """Make the workers of ``loader`` end with this process (in place; returns ``loader``).

    Set before the loader is first iterated: workers started earlier keep their old init.
    """
    if loader.num_workers > 0 and not isinstance(loader.worker_init_fn, EndWithParent):
        loader.worker_init_fn = EndWithParent(loader.worker_init_fn)
    return loader


def build_dataloaders_ending_with_parent(runner) -> None:
    """Every dataloader ``runner`` builds from now on gets :class:`EndWithParent` workers.

    The Runner builds its train / val / test loaders lazily, through ``runner.build_dataloader``
    (its loops call it when they are built); this wraps that method of this one Runner.
    """
    build = runner.build_dataloader

    def build_dataloader(*args, **kwargs) -> DataLoader:
        return end_workers_with_parent(build(*args, **kwargs))

    runner.build_dataloader = build_dataloader


def end_with_launcher() -> bool:
    """In a process started by torchrun (``TORCHELASTIC_RUN_ID`` is set), ask to be killed when
    torchrun dies; its dataloader workers then end with it (:class:`EndWithParent`).

    Call it first thing in a tool's ``main``. Processes not started by torchrun are left alone:
    their parent may well end first on purpose (a shell that started a background job).

    NOTE: a torchrun that died before this call is not noticed here; the process then fails to
    reach torchrun's store when it sets up the process group.

    Returns:
        bool: True where the signal was set.
    """
    if 'TORCHELASTIC_RUN_ID' not in os.environ:
        return False
    return set_parent_death_signal(os.getppid())
