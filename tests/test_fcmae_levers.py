"""The FCMAE study's lever sweep (experiments/fcmae_study/levers.py): every pretraining probed
against its random init, the held-out choices of the fine-tuning, and checkpoint reuse."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from experiments.fcmae_study import common, levers, training


@pytest.mark.slow
def test_quick_lever_sweep_probes_every_variant_against_its_random_init(tmp_path):
    out, work = tmp_path / 'out', tmp_path / 'work'
    args = ['--quick', '--variants', 'base', 'no_grn', 'grid_8x8', '--layer-decays', '0.9', '1.0',
            '--out', str(out), '--work-dir', str(work)]
    levers.main(args)
    written = json.loads((out / 'results.json').read_text())
    assert written['command'] == 'python experiments/fcmae_study/levers.py ' + ' '.join(args)
    names = {r['name'] for r in written['probes']}
    assert names == {'base', 'no_grn', 'grid_8x8', 'random_textured', 'random_textured_no_grn',
                     'random_textured_x2'}
    by_name = {r['name']: r for r in written['probes']}
    for variant, random_init in (('base', 'random_textured'),
                                 ('no_grn', 'random_textured_no_grn'),
                                 ('grid_8x8', 'random_textured_x2')):
        record = by_name[variant]
        assert (work / f'{variant}_backbone.pth').is_file()
        assert record['pretraining']['steps'] >= 1
        for split in ('heldout', 'val'):
            assert record['gain'][split] == pytest.approx(
                record[split]['miou'] - by_name[random_init][split]['miou'])
    # The variant fine-tuned is the one at the study's size with the largest held-out gain,
    # beside scratch; its layer decays are tried on held-out, the best one runs on val.
    best = max(('base', 'no_grn'), key=lambda n: by_name[n]['gain']['heldout'])
    runs = written['finetunes']
    assert {r['variant'] for r in runs} == {'scratch', best}
    heldout = [r for r in runs if r['split'] == 'heldout']
    assert sorted(r['layer_decay'] for r in heldout) == [0.9, 1.0]
    assert {r['variant'] for r in heldout} == {best}  # scratch has no decay to choose
    chosen = max(heldout, key=lambda r: r['miou'])['layer_decay']
    val = [r for r in runs if r['split'] == 'val']
    assert {(r['variant'], r['seed']) for r in val} == {('scratch', 0), (best, 0)}
    assert {r['variant']: r['layer_decay'] for r in val} == {best: chosen, 'scratch': 1.0}
    assert 'random_textured' in (out / 'results.md').read_text()


def assert_each_init_chose_on_heldout(runs, setting, values):
    """Both inits ran every value of ``setting`` on held-out, and each ran on val with the value
    that scored best there."""
    heldout = [r for r in runs if r['split'] == 'heldout']
    assert sorted((r['variant'], r[setting]) for r in heldout) == [
        (init, v) for init in ('base', 'scratch') for v in values]
    val = {r['variant']: r[setting] for r in runs if r['split'] == 'val'}
    for init in ('scratch', 'base'):
        mine = [r for r in heldout if r['variant'] == init]
        assert val[init] == max(mine, key=lambda r: r['miou'])[setting]


@pytest.mark.slow
def test_decay_scratch_lets_scratch_choose_its_layer_decay_on_heldout(tmp_path):
    runs = levers.main(['--quick', '--variants', 'base', '--decay-scratch',
                              '--layer-decays', '0.1', '1.0', '--out', str(tmp_path / 'out'),
                              '--work-dir', str(tmp_path / 'work')])['finetunes']
    assert_each_init_chose_on_heldout(runs, 'layer_decay', (0.1, 1.0))


@pytest.mark.slow
def test_frozen_iters_are_chosen_on_heldout_for_every_init_and_used_on_val(tmp_path):
    runs = levers.main(['--quick', '--variants', 'base', '--frozen-iters', '0', '1',
                              '--out', str(tmp_path / 'out'),
                              '--work-dir', str(tmp_path / 'work')])['finetunes']
    assert_each_init_chose_on_heldout(runs, 'frozen_iters', (0, 1))
    assert '| frozen iters |' in (tmp_path / 'out' / 'results.md').read_text()


class ScoresByBudget:
    """Stands in for the sweep's worker pool: each fine-tuning job returns at once, scoring the
    larger lr best with 4 labels and the smaller one best with 8."""

    def imap(self, _, jobs):
        for job in jobs:
            yield training.Record(job.arm, job.budget, job.seed,
                                  job.lr if job.budget == 4 else -job.lr, job.split, job.lr)


def fine_tune_base_beside_scratch(sweep):
    """The fine-tuning records of ``levers.finetune_variants`` for variant ``base`` and
    scratch, the jobs scored by ``ScoresByBudget``."""
    base = dict(name='base', scene='textured', arch='atto', use_grn=True)
    runs = []
    levers.finetune_variants(ScoresByBudget(), sweep, [base], Path('work'), runs,
                             save=lambda: None, log=lambda _: None)
    return runs


@pytest.mark.parametrize('per_budget', [False, True])
def test_held_out_choices_are_made_at_every_budget_only_when_asked(per_budget):
    sweep = replace(levers.QUICK, finetune_budgets=(8, 4), lr_grid=(1e-3, 1e-2),
                    finetune_variants=('base',), choose_per_budget=per_budget)
    runs = fine_tune_base_beside_scratch(sweep)
    heldout = {(r['variant'], r['labeled_images'], r['lr']) for r in runs
               if r['split'] == 'heldout'}
    val = {(r['variant'], r['labeled_images']): r['lr'] for r in runs if r['split'] == 'val'}
    budgets = (4, 8) if per_budget else (4,)
    assert heldout == {(init, b, lr) for init in ('scratch', 'base') for b in budgets
                       for lr in (1e-3, 1e-2)}
    # 4 labels prefer 1e-2; 8 labels prefer 1e-3 when they choose, else keep 4's choice.
    assert val == {(init, b): 1e-2 if b == 4 or not per_budget else 1e-3
                   for init in ('scratch', 'base') for b in (4, 8)}


def test_a_single_learning_rate_is_used_by_every_init_without_held_out_runs():
    sweep = replace(levers.QUICK, finetune_budgets=(4,), lr_grid=(1e-2,),
                    finetune_variants=('base',))
    runs = fine_tune_base_beside_scratch(sweep)
    assert sorted((r['variant'], r['split'], r['lr']) for r in runs) == [
        ('base', 'val', 1e-2), ('scratch', 'val', 1e-2)]


def test_choose_per_budget_reaches_the_sweep_from_the_command_line(monkeypatch, tmp_path):
    sweeps = []
    monkeypatch.setattr(levers, 'run_sweep', lambda sweep, *a, **k: sweeps.append(sweep))
    for flag in ([], ['--choose-per-budget']):
        levers.main(['--quick', '--out', str(tmp_path)] + flag)
    assert [s.choose_per_budget for s in sweeps] == [False, True]


@pytest.mark.parametrize('frozen_iters', [0, 2])
def test_a_fine_tuning_jobs_frozen_iters_keep_the_backbone_still_that_long(monkeypatch,
                                                                           frozen_iters):
    # A job made as the sweep makes it, run as a worker runs it (on splits set here). The
    # backbone's weights are read as each of its forwards begins: one per training step, then
    # the evaluation's.
    split = training.render_split(2, 0)
    monkeypatch.setitem(common._DATA, 'textured', dict(pool=split, val=split))
    sweep = replace(levers.QUICK, finetune_iters=4)
    seen = []
    build = training.build_segmentor

    def watched(*args, **kwargs):
        model = build(*args, **kwargs)
        weight = model.backbone.stages[3][0].pwconv1.weight
        model.backbone.register_forward_pre_hook(
            lambda m, _: seen.append(weight.detach().clone()))
        return model

    monkeypatch.setattr(training, 'build_segmentor', watched)
    job = levers.finetune_job(sweep, levers.Init('scratch', 'scratch', None), 'textured', 'atto',
                              'val', budget=2, seed=0, lr=1e-3, layer_decay=1.0,
                              frozen_iters=frozen_iters)
    record = levers.finetune_record(job, common.run_finetune_job(job))
    assert record['frozen_iters'] == frozen_iters
    assert len(seen) == sweep.finetune_iters + 1
    # Still during the first ``frozen_iters`` steps, then changed by every step.
    moved = [not torch.equal(before, after) for before, after in zip(seen, seen[1:])]
    assert moved == [step >= frozen_iters for step in range(sweep.finetune_iters)]


def test_negative_frozen_iters_are_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        levers.main(['--quick', '--frozen-iters', '-1', '--out', str(tmp_path / 'out')])
    assert '--frozen-iters must be >= 0' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_an_unknown_lever_variant_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        levers.main(['--quick', '--variants', 'bogus', '--out', str(tmp_path)])
    # Fine-tuning a variant the run does not pretrain at the study's size is refused up front.
    for variants in (['base'], ['base', 'grid_8x8']):
        with pytest.raises(ValueError, match='--finetune-variants.*add them to --variants'):
            levers.main(['--quick', '--variants', *variants, '--finetune-variants', 'long',
                               '--out', str(tmp_path / 'out'), '--work-dir', str(tmp_path)])
    assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_lever_sweep_probes_only_with_one_worker(tmp_path):
    written = levers.main(['--quick', '--variants', 'grid_8x8', '--no-finetune',
                                 '--workers', '1', '--out', str(tmp_path / 'out'),
                                 '--work-dir', str(tmp_path / 'work')])
    assert {r['name'] for r in written['probes']} == {'grid_8x8', 'random_textured_x2'}
    assert written['finetunes'] == []
    assert written['sweep']['workers'] == 1


@pytest.mark.slow
def test_a_larger_encoder_is_probed_and_fine_tuned_against_baselines_of_its_own_size(tmp_path):
    work = tmp_path / 'work'
    written = levers.main(['--quick', '--variants', 'pico', '--workers', '1',
                                 '--out', str(tmp_path / 'out'), '--work-dir', str(work)])
    assert {(r['name'], r['arch']) for r in written['probes']} == {
        ('pico', 'pico'), ('random_textured_pico', 'pico')}
    state = torch.load(work / 'pico_backbone.pth', map_location='cpu')['state_dict']
    assert state['stages.0.0.dwconv.weight'].shape[0] == 64  # pico's first stage, not atto's 40
    runs = written['finetunes']
    assert {(r['variant'], r['arch']) for r in runs} == {('scratch', 'pico'), ('pico', 'pico')}
    settings = json.loads((work / 'pico_backbone.json').read_text())['settings']
    assert settings['study']['arch'] == 'pico'


@pytest.mark.slow
def test_lever_sweep_reuses_a_checkpoint_only_with_the_same_settings(tmp_path):
    out, work = tmp_path / 'out', tmp_path / 'work'
    common = ['--quick', '--variants', 'base', '--work-dir', str(work), '--workers', '1']
    first = levers.main(common + ['--no-finetune', '--out', str(out / 'first')])
    checkpoint = work / 'base_backbone.pth'
    assert first['probes'][0]['reused_pretraining'] is False
    # Without the flag the sweep pretrains again; with it, the checkpoint and its record stay.
    first = levers.main(common + ['--no-finetune', '--out', str(out / 'again')])
    assert first['probes'][0]['reused_pretraining'] is False
    made = checkpoint.read_bytes()
    second = levers.main(common + ['--reuse-pretrained', '--finetune-budgets', '8', '4',
                                         '--layer-decays', '0.9', '1.0', '--lr-grid', '1e-3',
                                         '1e-4', '--finetune-variants', 'base',
                                         '--finetune-seeds', '0', '3',
                                         '--out', str(out / 'second')])
    base = next(r for r in second['probes'] if r['name'] == 'base')
    assert base['reused_pretraining'] is True
    assert base['pretraining'] == first['probes'][0]['pretraining']
    assert checkpoint.read_bytes() == made
    # Every init's lr, then the pretrained one's layer decay (at its lr), are chosen on held-out
    # at the smallest budget, each cell run once; every budget then runs on val with them.
    runs = second['finetunes']
    heldout = [r for r in runs if r['split'] == 'heldout']
    assert {r['labeled_images'] for r in heldout} == {4}
    cells = [(r['variant'], r['lr'], r['layer_decay']) for r in heldout]
    assert len(cells) == len(set(cells)) == 5  # 2 lrs x 2 inits, + the other decay of 'base'
    val = [r for r in runs if r['split'] == 'val']
    assert {(r['variant'], r['labeled_images'], r['seed']) for r in val} == {
        (init, budget, seed) for init in ('scratch', 'base') for budget in (4, 8)
        for seed in (0, 3)}
    # The lrs are tried at the first decay of the grid; scratch has none (1.0).
    for init, first_decay in (('scratch', 1.0), ('base', 0.9)):
        lr = max((r for r in heldout if r['variant'] == init and r['layer_decay'] == first_decay),
                 key=lambda r: r['miou'])['lr']
        assert {r['lr'] for r in val if r['variant'] == init} == {lr}
    decay = max((r for r in heldout if r['variant'] == 'base' and r['lr'] == lr),
                key=lambda r: r['miou'])['layer_decay']
    assert {r['layer_decay'] for r in val if r['variant'] == 'base'} == {decay}
    assert '| 8 |' in (out / 'second' / 'results.md').read_text()
    # Any pretraining setting that differs, or a missing record, means pretraining again.
    study = levers.study_for(levers.QUICK, levers.VARIANTS[0], quick=True)
    settings = levers.pretraining_settings(study, 'textured', True, 1)
    assert levers.reusable_pretraining(checkpoint, settings) == base['pretraining']
    for changed in (replace(study, mask_ratio=0.75), replace(study, pretrain_epochs=2)):
        assert levers.reusable_pretraining(
            checkpoint, levers.pretraining_settings(changed, 'textured', True, 1)) is None
    assert levers.reusable_pretraining(
        checkpoint, levers.pretraining_settings(study, 'textured', False, 1)) is None
    # A record written before the arch was a lever (no 'arch') stands for atto, never for pico.
    record_file = checkpoint.with_suffix('.json')
    record = json.loads(record_file.read_text())
    del record['settings']['study']['arch']
    record_file.write_text(json.dumps(record))
    assert levers.reusable_pretraining(checkpoint, settings) == base['pretraining']
    pico = levers.pretraining_settings(replace(study, arch='pico'), 'textured', True, 1)
    assert levers.reusable_pretraining(checkpoint, pico) is None
    record_file.unlink()
    assert levers.reusable_pretraining(checkpoint, settings) is None


def test_a_pretraining_killed_midway_leaves_no_record_beside_the_checkpoint(tmp_path, monkeypatch):
    study = levers.study_for(levers.QUICK, levers.VARIANTS[0], quick=True)
    checkpoint = tmp_path / 'base_backbone.pth'
    checkpoint.write_bytes(b'made with mask ratio 0.75')
    old = levers.pretraining_settings(replace(study, mask_ratio=0.75), 'textured', True, 1)
    checkpoint.with_suffix('.json').write_text(json.dumps(dict(settings=old, pretraining={})))
    split = training.render_split(4, 0, training.scene(study))
    monkeypatch.setitem(common._DATA, 'textured', dict(pool=split, heldout=split, val=split))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt('killed while pretraining')
    monkeypatch.setattr(training, 'pretrain', killed)
    sweep = replace(levers.QUICK, reuse_pretrained=True)
    with pytest.raises(KeyboardInterrupt):
        levers._probe_job(levers.ProbeJob('base', 'textured', True, 1, 'atto', study, sweep,
                                          str(tmp_path)))
    # The old checkpoint may still be there, but not its record: a later run with the old
    # settings pretrains again instead of trusting a file that may be half replaced.
    assert not checkpoint.with_suffix('.json').exists()
    assert levers.reusable_pretraining(checkpoint, old) is None
