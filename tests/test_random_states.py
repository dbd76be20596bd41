"""Random states travel in checkpoints: a resumed run draws what the uninterrupted one drew
(the killed-and-resumed tools are in test_tools.py, test_segmentation.py and test_fcmae.py)."""
import random
import re
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS, DefaultScope
from mmengine.runner import Runner

from cnxv2_dense.engine import (AtomicCheckpointHook, AverageBuffersHook, RandomStateHook,
                                get_random_states, set_random_states)
from cnxv2_dense.utils import allow_mmengine_checkpoints

from .conftest import ROOT, ToyData, ToyModel


def draws() -> list:
    return [random.random(), float(np.random.rand()), np.random.randn(), torch.rand(1).item()]


def test_states_restore_every_generator_and_load_weights_only(tmp_path):
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    states = get_random_states()
    first = draws()
    torch.save(states, tmp_path / 'states.pth')
    set_random_states(torch.load(tmp_path / 'states.pth', weights_only=True))
    assert draws() == first


class NoisyModel(ToyModel):
    """Its loss draws from every generator, as proposal sampling and drop path do."""

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        noise = torch.rand_like(out) + float(np.random.rand()) + random.random()
        return dict(loss=(out * noise).pow(2).mean()) if mode == 'loss' else out


def noisy_runner(work_dir: Path, max_iters: int, resume: bool = False, hooks: bool = True,
                 load_from=None) -> Runner:
    torch.manual_seed(0)  # the model is built before the Runner seeds
    return Runner(
        model=NoisyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=2, num_workers=0,
                              sampler=dict(type='InfiniteSampler', shuffle=True),
                              collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='cnxv2_dense.AtomicCheckpointHook', interval=2,
                                           by_epoch=False)),
        custom_hooks=[dict(type='cnxv2_dense.RandomStateHook')] if hooks else None,
        randomness=dict(seed=0), resume=resume, load_from=load_from, default_scope='mmengine')


def trained_weight(runner: Runner) -> torch.Tensor:
    runner.train()
    return runner.model.linear.weight.detach().clone()


def test_resume_continues_the_draws_of_the_uninterrupted_run(tmp_path):
    allow_mmengine_checkpoints()
    whole = trained_weight(noisy_runner(tmp_path / 'whole', max_iters=4))
    noisy_runner(tmp_path / 'part', max_iters=2).train()
    assert 'random_states' in torch.load(tmp_path / 'part' / 'iter_2.pth', weights_only=True)
    resumed = noisy_runner(tmp_path / 'part', max_iters=4, resume=True)
    assert torch.equal(trained_weight(resumed), whole)
    assert any(isinstance(hook, RandomStateHook) for hook in resumed.hooks)

    # Without the hook the resumed run is seeded afresh and ends elsewhere (what it fixes).
    noisy_runner(tmp_path / 'plain', max_iters=2, hooks=False).train()
    plain = noisy_runner(tmp_path / 'plain', max_iters=4, resume=True, hooks=False)
    assert not torch.equal(trained_weight(plain), whole)


def test_checkpoints_without_random_states_still_resume(tmp_path):
    allow_mmengine_checkpoints()
    noisy_runner(tmp_path, max_iters=2, hooks=False).train()  # as written before the hook
    assert 'random_states' not in torch.load(tmp_path / 'iter_2.pth', weights_only=True)
    resumed = noisy_runner(tmp_path, max_iters=4, resume=True)
    resumed.train()
    assert resumed.iter == 4 and (tmp_path / 'iter_4.pth').is_file()


def test_loading_weights_to_fine_tune_keeps_the_fresh_seeding(tmp_path):
    """load_from (not a resume) takes the weights, not the random states, of a checkpoint."""
    allow_mmengine_checkpoints()
    noisy_runner(tmp_path / 'source', max_iters=2).train()
    source = str(tmp_path / 'source' / 'iter_2.pth')
    with_hook = trained_weight(noisy_runner(tmp_path / 'a', max_iters=2, load_from=source))
    without = trained_weight(noisy_runner(tmp_path / 'b', max_iters=2, load_from=source,
                                          hooks=False))
    assert torch.equal(with_hook, without)


def test_the_config_lines_in_docs_build_both_hooks():
    """docs/runs.md shows how a config names the hooks for mmdet's / mmseg's own tools."""
    text = (Path(ROOT) / 'docs' / 'runs.md').read_text()
    blocks = re.findall(r'```python\n(.*?)```', text, flags=re.S)
    assert len(blocks) == 1
    cfg = Config.fromstring(blocks[0], '.py')
    with DefaultScope.overwrite_default_scope('mmdet'):
        checkpoint = HOOKS.build(cfg.default_hooks.checkpoint)
        custom = [HOOKS.build(hook) for hook in cfg.custom_hooks]
    assert isinstance(checkpoint, AtomicCheckpointHook) and checkpoint.interval == 1
    assert [type(hook) for hook in custom] == [RandomStateHook, AverageBuffersHook]
