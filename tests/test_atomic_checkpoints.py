"""A checkpoint is never left half-written: files written through a temporary file and a rename,
and the checkpoint hook the tools use (the previous checkpoint and ``last_checkpoint`` stay valid
until the new ones are complete)."""
import glob
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.registry import HOOKS, METRICS, DefaultScope
from mmengine.runner import Runner

from cnxv2_dense.engine import AtomicCheckpointHook, AtomicLocalBackend, use_atomic_checkpoints
from cnxv2_dense.utils import allow_mmengine_checkpoints
from cnxv2_dense.utils.atomic_file import (PARTIAL_SUFFIX, atomic_output, remove_partial_files,
                                           write_bytes_atomically)

from .conftest import ROOT, ToyData, ToyModel

# Writes the target slowly through atomic_output; says when half of it is on disk.
SLOW_WRITER = """
import sys, time
from cnxv2_dense.utils import allow_mmengine_checkpoints
from cnxv2_dense.utils.atomic_file import atomic_output
with atomic_output(sys.argv[1]) as tmp:
    with open(tmp, 'wb') as f:
        f.write(b'new' * 1000)
        f.flush()
        print('HALF WRITTEN', flush=True)
        time.sleep(60)
        f.write(b'new' * 1000)
"""


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    target = tmp_path / 'epoch_1.pth'
    target.write_bytes(b'old checkpoint')
    proc = subprocess.Popen([sys.executable, '-c', SLOW_WRITER, str(target)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == 'HALF WRITTEN'
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert target.read_bytes() == b'old checkpoint'
    leftovers = list(tmp_path.glob(f'.*{PARTIAL_SUFFIX}'))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 3000  # the half it wrote
    assert remove_partial_files(tmp_path) == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth']


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / 'last_checkpoint'
    target.write_text('epoch_1.pth')
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_output(target) as tmp:
            tmp.write_text('epoch_')
            raise RuntimeError('disk full')
    assert target.read_text() == 'epoch_1.pth'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last_checkpoint']
    write_bytes_atomically(b'epoch_2.pth', target)
    assert target.read_text() == 'epoch_2.pth'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last_checkpoint']
    write_bytes_atomically(b'x', tmp_path / 'new' / 'folder' / 'file')  # folders are created
    assert (tmp_path / 'new' / 'folder' / 'file').read_bytes() == b'x'


def toy_runner(work_dir: Path, max_iters: int, resume: bool = False, **hook_args) -> Runner:
    return Runner(
        model=ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='InfiniteSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='cnxv2_dense.AtomicCheckpointHook', interval=1,
                                           by_epoch=False, **hook_args)),
        resume=resume, default_scope='mmengine')


def test_hook_retires_the_old_checkpoint_only_after_the_new_one_is_complete(tmp_path,
                                                                             monkeypatch):
    # What the work dir holds at the moment each checkpoint's bytes are being written.
    seen = []
    put = AtomicLocalBackend.put

    def recording_put(self, obj, filepath):
        names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == '.pth')
        last = (tmp_path / 'last_checkpoint')
        seen.append((Path(filepath).name, names,
                     Path(last.read_text()).name if last.exists() else None))
        put(self, obj, filepath)

    monkeypatch.setattr(AtomicLocalBackend, 'put', recording_put)
    (tmp_path / '.iter_9.pth.123.partial').write_bytes(b'half')  # left by a killed run
    runner = toy_runner(tmp_path, max_iters=3, max_keep_ckpts=1)
    assert any(isinstance(hook, AtomicCheckpointHook) for hook in runner.hooks)
    runner.train()
    assert seen == [('iter_1.pth', [], None),
                    ('iter_2.pth', ['iter_1.pth'], 'iter_1.pth'),
                    ('iter_3.pth', ['iter_2.pth'], 'iter_2.pth')]
    written = sorted(p.name for p in tmp_path.iterdir() if p.is_file() and p.suffix != '.py')
    assert written == ['iter_3.pth', 'last_checkpoint']  # (and the dumped config, <time>.py)
    assert Path((tmp_path / 'last_checkpoint').read_text()) == tmp_path / 'iter_3.pth'
    checkpoint = torch.load(tmp_path / 'iter_3.pth', weights_only=False)
    assert checkpoint['meta']['iter'] == 3
    assert checkpoint['message_hub']['runtime_info']['keep_ckpt_ids'] == [3]
    assert torch.equal(checkpoint['state_dict']['linear.weight'],
                       runner.model.linear.weight.detach())


@METRICS.register_module(force=True)
class RisingScore(BaseMetric):
    """Scores each validation 1, 2, 3, ...: every validation gives a new best checkpoint."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.evaluations = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        self.evaluations += 1
        return dict(score=float(self.evaluations))


def loadable_checkpoints(folder: Path) -> list:
    """The checkpoints in ``folder`` that load completely (temporary files are not looked at)."""
    names = []
    for path in sorted(folder.glob('*.pth')):
        try:
            torch.load(path, map_location='cpu', weights_only=False)
        except Exception:  # a truncated or empty file: not a checkpoint one could resume from
            continue
        names.append(path.name)
    return names


def states_a_kill_could_leave(tmp_path: Path, monkeypatch, hook_type: str) -> list:
    """Train the toy model 4 iterations with ``max_keep_ckpts=1`` and ``save_best`` (each
    validation a new best), and record the complete checkpoints and what ``last_checkpoint``
    names each time a file of the work dir is removed or renamed into place: each moment a
    kill could stop the run at."""
    states = []

    def record():
        last = tmp_path / 'last_checkpoint'
        states.append((loadable_checkpoints(tmp_path),
                       Path(last.read_text()).name if last.is_file() else None))

    def recording(operation):
        def run(*args, **kwargs):
            record()  # before: a kill just before this step
            result = operation(*args, **kwargs)
            record()  # after: a kill just after it
            return result
        return run

    for name in ('replace', 'remove', 'unlink'):
        monkeypatch.setattr(os, name, recording(getattr(os, name)))
    runner = Runner(
        model=ToyModel(), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='InfiniteSampler', shuffle=False),
                              collate_fn=dict(type='pseudo_collate')),
        val_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                            sampler=dict(type='DefaultSampler', shuffle=False),
                            collate_fn=dict(type='pseudo_collate')),
        val_evaluator=dict(type='RisingScore'), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=4, val_interval=1),
        default_hooks=dict(checkpoint=dict(type=hook_type, interval=1, by_epoch=False,
                                           max_keep_ckpts=1, save_best='score', rule='greater')),
        # NOTE: a name of its own: two Runners built in the same second otherwise share one
        # MessageHub (named after the time), and the earlier run's best score would stand.
        experiment_name=f'rotation_{hook_type}_{tmp_path.name}',
        default_scope='mmengine')
    runner.train()
    monkeypatch.undo()
    record()
    return states


def test_rotation_never_leaves_no_checkpoint(tmp_path, monkeypatch):
    """max_keep_ckpts and save_best delete an older checkpoint only once the new one is
    complete: wherever a kill stops the run after its first save, the work dir holds a periodic
    checkpoint that loads, named by last_checkpoint, and a best one that loads."""
    states = states_a_kill_could_leave(tmp_path, monkeypatch, 'cnxv2_dense.AtomicCheckpointHook')
    assert states[-1] == (['best_score_iter_4.pth', 'iter_4.pth'], 'iter_4.pth')
    after_first = states[next(i for i, (names, _) in enumerate(states)
                              if 'best_score_iter_1.pth' in names):]
    for names, last in after_first:
        assert last in names, (names, last)
        assert any(name.startswith('best_') for name in names), names
    # each older checkpoint was there until its successor was complete, and is gone now
    seen = {name for names, _ in states for name in names}
    assert seen == {f'iter_{i}.pth' for i in range(1, 5)} | {
        f'best_score_iter_{i}.pth' for i in range(1, 5)}


def test_mmengine_rotation_can_leave_no_best_checkpoint(tmp_path, monkeypatch):
    """What the test above guards against: mmengine's own hook deletes the previous best
    checkpoint before it writes the new one (and the oldest periodic one before the new one)."""
    states = states_a_kill_could_leave(tmp_path, monkeypatch, 'CheckpointHook')
    assert states[-1] == (['best_score_iter_4.pth', 'iter_4.pth'], 'iter_4.pth')
    # iter_1.pth deleted before iter_2.pth is written: last_checkpoint names nothing
    assert (['best_score_iter_1.pth'], 'iter_1.pth') in states
    # the best of iteration 1 deleted before that of iteration 2 is written: no best at all
    assert (['iter_2.pth'], 'iter_2.pth') in states


def test_resume_after_the_hook_retires_checkpoints(tmp_path):
    allow_mmengine_checkpoints()  # as the tools do: torch loads weights-only
    toy_runner(tmp_path, max_iters=2, max_keep_ckpts=2).train()
    runner = toy_runner(tmp_path, max_iters=4, resume=True, max_keep_ckpts=2)  # as --resume
    runner.train()
    assert runner.iter == 4
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_3.pth', 'iter_4.pth']


def shipped_configs():
    return sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))


@pytest.mark.parametrize('path', shipped_configs(), ids=os.path.basename)
def test_every_shipped_config_gets_the_atomic_hook_with_its_arguments(path):
    cfg = Config.fromfile(path)
    original = dict(cfg.default_hooks.checkpoint)
    use_atomic_checkpoints(cfg)
    hook_cfg = dict(cfg.default_hooks.checkpoint)
    assert hook_cfg.pop('type') == 'cnxv2_dense.AtomicCheckpointHook'
    assert original.pop('type') == 'CheckpointHook' and hook_cfg == original
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmengine')):
        hook = HOOKS.build(cfg.default_hooks.checkpoint)
    assert isinstance(hook, AtomicCheckpointHook)
    assert hook.interval == original['interval']
    assert hook.max_keep_ckpts == original.get('max_keep_ckpts', -1)


def test_configs_without_a_plain_checkpoint_hook():
    cfg = Config(dict(default_hooks=dict(logger=dict(type='LoggerHook'))))
    use_atomic_checkpoints(cfg)  # mmengine would add CheckpointHook(interval=1)
    assert cfg.default_hooks.checkpoint == dict(type='cnxv2_dense.AtomicCheckpointHook',
                                                interval=1)
    off = Config(dict(default_hooks=dict(checkpoint=None)))
    use_atomic_checkpoints(off)
    assert off.default_hooks.checkpoint is None
    own = Config(dict(default_hooks=dict(checkpoint=dict(type='MyCheckpointHook'))))
    use_atomic_checkpoints(own)
    assert own.default_hooks.checkpoint.type == 'MyCheckpointHook'
