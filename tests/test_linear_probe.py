"""The frozen dense linear probe (cnxv2_dense.analysis.linear_probe) on cases with known answers."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnxv2_dense.analysis import LinearProbe, class_iou, confusion_matrix, dense_features
from cnxv2_dense.models import ConvNeXtV2


def block_labels(n: int, size: int = 32, cell: int = 8, classes: int = 4, seed: int = 0):
    """Label maps constant on ``cell`` x ``cell`` blocks (one class per probe cell)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (n, size // cell, size // cell), generator=gen)
    return coarse.repeat_interleave(cell, 1).repeat_interleave(cell, 2)


class OneHotBackbone(nn.Module):
    """A 'backbone' whose stage-1 map (stride 4) holds the label one-hot: a perfect feature."""

    def forward(self, x):
        labels = x[:, 0].round().long()
        onehot = F.one_hot(labels, 4).permute(0, 3, 1, 2).float()
        return (F.avg_pool2d(onehot, 4), F.avg_pool2d(onehot, 32))


def test_features_that_hold_the_label_are_probed_perfectly():
    # One class per image: no class boundary for the bilinear upsampling of logits to blur.
    labels = torch.arange(24).remainder(4).view(24, 1, 1).expand(-1, 32, 32).contiguous()
    images = labels[:, None].float().expand(-1, 3, -1, -1)  # channel 0 carries the label
    feats = dense_features(OneHotBackbone(), images)
    assert feats.shape == (24, 8, 4, 4)
    probe = LinearProbe(4, steps=200).fit(feats[:16], labels[:16])
    result = probe.score(feats[16:], labels[16:])
    assert result.miou > 99.9
    assert all(v > 99.9 for v in result.class_iou)


def test_features_without_information_score_no_better_than_one_class_everywhere():
    labels = block_labels(24)
    feats = torch.randn(1, 6, 4, 4).expand(24, -1, -1, -1).contiguous()  # same for every image
    result = LinearProbe(4, steps=100).fit(feats[:16], labels[:16]).score(feats[16:], labels[16:])
    # One fixed map for every image: each cell gets one class whatever the image, so the
    # score is that of a fixed guess (~1/16 per class for 4 uniform classes, far below 100).
    assert result.miou < 30


def test_dense_features_pools_finer_maps_and_upsamples_coarser_ones():
    class Two(nn.Module):
        def forward(self, x):
            return (x[:, :1], x[:, :1, ::16, ::16])  # stride 1 and stride 16

    images = torch.randn(2, 3, 32, 32)
    feats = dense_features(Two(), images)
    assert feats.shape == (2, 2, 4, 4)
    assert torch.allclose(feats[:, :1], F.avg_pool2d(images[:, :1], 8))
    assert torch.allclose(feats[:, 1:], F.interpolate(images[:, :1, ::16, ::16], size=(4, 4),
                                                      mode='bilinear', align_corners=False))


def test_dense_features_refuses_a_size_not_divisible_by_the_stride():
    with pytest.raises(ValueError, match='not divisible by the probe stride 8'):
        dense_features(ConvNeXtV2(arch='atto'), torch.randn(1, 3, 36, 36))


def test_dense_features_restores_the_training_mode():
    backbone = ConvNeXtV2(arch='atto', out_indices=(0, 1, 2, 3))
    backbone.train()
    dense_features(backbone, torch.randn(1, 3, 32, 32))
    assert backbone.training


def test_iou_from_the_confusion_matrix_by_hand():
    truth = torch.tensor([[0, 0, 1, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 2]])
    conf = confusion_matrix(pred, truth, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]  # the 255 pixel is ignored
    iou = class_iou(conf)
    assert iou[0].item() == pytest.approx(1 / 2) and iou[1].item() == pytest.approx(2 / 3)
    assert torch.isnan(iou[2])  # absent from truth and prediction


def test_predict_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match='fit'):
        LinearProbe(4).predict(torch.zeros(1, 2, 4, 4), (32, 32))


def test_quick_lever_sweep_probes_every_variant_against_its_random_init(tmp_path):
    from tools import fcmae_levers
    out, work = tmp_path / 'out', tmp_path / 'work'
    args = ['--quick', '--variants', 'base', 'no_grn', 'grid_8x8', '--layer-decays', '0.9', '1.0',
            '--out', str(out), '--work-dir', str(work)]
    fcmae_levers.main(args)
    written = json.loads((out / 'results.json').read_text())
    assert written['command'] == 'python tools/fcmae_levers.py ' + ' '.join(args)
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


def test_decay_scratch_lets_scratch_choose_its_layer_decay_on_heldout(tmp_path):
    from tools import fcmae_levers
    runs = fcmae_levers.main(['--quick', '--variants', 'base', '--decay-scratch',
                              '--layer-decays', '0.1', '1.0', '--out', str(tmp_path / 'out'),
                              '--work-dir', str(tmp_path / 'work')])['finetunes']
    assert_each_init_chose_on_heldout(runs, 'layer_decay', (0.1, 1.0))


def test_frozen_iters_are_chosen_on_heldout_for_every_init_and_used_on_val(tmp_path):
    from tools import fcmae_levers
    runs = fcmae_levers.main(['--quick', '--variants', 'base', '--frozen-iters', '0', '1',
                              '--out', str(tmp_path / 'out'),
                              '--work-dir', str(tmp_path / 'work')])['finetunes']
    assert_each_init_chose_on_heldout(runs, 'frozen_iters', (0, 1))
    assert '| frozen iters |' in (tmp_path / 'out' / 'results.md').read_text()


class ScoresByBudget:
    """Stands in for the sweep's worker pool: each fine-tuning job returns at once, scoring the
    larger lr best with 4 labels and the smaller one best with 8."""

    def imap(self, _, jobs):
        for name, _arm, _scene, _arch, _file, lr, seed, decay, frozen, split, budget, _ in jobs:
            yield dict(variant=name, lr=lr, layer_decay=decay, frozen_iters=frozen, seed=seed,
                       split=split, labeled_images=budget, seconds=0.,
                       miou=lr if budget == 4 else -lr)


def fine_tune_base_beside_scratch(sweep):
    """The fine-tuning records of ``fcmae_levers.finetune_variants`` for variant ``base`` and
    scratch, the jobs scored by ``ScoresByBudget``."""
    from tools import fcmae_levers
    base = dict(name='base', scene='textured', arch='atto', use_grn=True)
    runs = []
    fcmae_levers.finetune_variants(ScoresByBudget(), sweep, [base], Path('work'), runs,
                                   save=lambda: None, log=lambda _: None)
    return runs


@pytest.mark.parametrize('per_budget', [False, True])
def test_held_out_choices_are_made_at_every_budget_only_when_asked(per_budget):
    from tools import fcmae_levers
    sweep = replace(fcmae_levers.QUICK, finetune_budgets=(8, 4), lr_grid=(1e-3, 1e-2),
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
    from tools import fcmae_levers
    sweep = replace(fcmae_levers.QUICK, finetune_budgets=(4,), lr_grid=(1e-2,),
                    finetune_variants=('base',))
    runs = fine_tune_base_beside_scratch(sweep)
    assert sorted((r['variant'], r['split'], r['lr']) for r in runs) == [
        ('base', 'val', 1e-2), ('scratch', 'val', 1e-2)]


def test_choose_per_budget_reaches_the_sweep_from_the_command_line(monkeypatch, tmp_path):
    from tools import fcmae_levers
    sweeps = []
    monkeypatch.setattr(fcmae_levers, 'run_sweep', lambda sweep, *a, **k: sweeps.append(sweep))
    for flag in ([], ['--choose-per-budget']):
        fcmae_levers.main(['--quick', '--out', str(tmp_path)] + flag)
    assert [s.choose_per_budget for s in sweeps] == [False, True]


def test_a_fine_tuning_job_hands_its_frozen_iters_to_the_study(monkeypatch):
    from tools import fcmae_levers, fcmae_study
    split = fcmae_study.render_split(2, 0)
    monkeypatch.setitem(fcmae_levers._DATA, 'textured', dict(pool=split, val=split))
    studies = []

    def run_cell(arm, train, evaluate, lr, study, seed, backbones, split_name):
        studies.append(study)
        return fcmae_study.Record(arm, len(train.images), seed, 0., split_name, lr)

    monkeypatch.setattr(fcmae_levers, 'run_cell', run_cell)
    record = fcmae_levers._finetune_job(('scratch', 'scratch', 'textured', 'atto', None, 1e-3, 0,
                                         1.0, 7, 'val', 2, fcmae_levers.QUICK))
    assert studies[0].frozen_backbone_iters == 7 and record['frozen_iters'] == 7


def test_negative_frozen_iters_are_refused_before_anything_runs(tmp_path, capsys):
    from tools import fcmae_levers
    with pytest.raises(SystemExit):
        fcmae_levers.main(['--quick', '--frozen-iters', '-1', '--out', str(tmp_path / 'out')])
    assert '--frozen-iters must be >= 0' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_an_unknown_lever_variant_is_refused(tmp_path):
    from tools import fcmae_levers
    with pytest.raises(SystemExit):
        fcmae_levers.main(['--quick', '--variants', 'bogus', '--out', str(tmp_path)])
    # Fine-tuning a variant the run does not pretrain at the study's size is refused up front.
    for variants in (['base'], ['base', 'grid_8x8']):
        with pytest.raises(ValueError, match='--finetune-variants.*add them to --variants'):
            fcmae_levers.main(['--quick', '--variants', *variants, '--finetune-variants', 'long',
                               '--out', str(tmp_path / 'out'), '--work-dir', str(tmp_path)])
    assert not (tmp_path / 'out').exists()


@pytest.fixture(scope='module')
def ade_shapes(tmp_path_factory):
    from cnxv2_dense.datasets import SceneSpec, write_ade_shapes
    root = tmp_path_factory.mktemp('ade_shapes')
    write_ade_shapes(root, num_train=12, num_val=6, spec=SceneSpec(image_size=64))
    return root


def test_probe_tool_scores_every_backbone_on_both_splits(ade_shapes, tmp_path):
    import csv
    from cnxv2_dense.analysis import random_backbone
    from tools import linear_probe
    ckpt = tmp_path / 'other_seed.pth'
    torch.save(dict(state_dict=random_backbone('atto', seed=1).state_dict()), ckpt)
    rows = linear_probe.main([str(ckpt), '--random', 'atto', '--data', str(ade_shapes),
                              '--num-classes', '4', '--image-size', '64', '--steps', '20',
                              '--out', str(tmp_path / 'out')])
    with open(tmp_path / 'out' / 'probe.csv') as f:
        written = list(csv.DictReader(f))
    assert [(r['checkpoint'], r['split']) for r in written] == [
        ('random_init_atto', 'training'), ('random_init_atto', 'validation'),
        ('other_seed', 'training'), ('other_seed', 'validation')]
    assert [float(r['miou']) for r in written] == [r['miou'] for r in rows]
    assert all(0 <= r['miou'] <= 100 and len(r['class_iou']) == 4 for r in rows)
    # Different weights, different features: the two backbones do not score alike everywhere.
    assert [r['class_iou'] for r in rows[:2]] != [r['class_iou'] for r in rows[2:]]


def test_probe_tool_reduce_zero_label_maps_like_mmseg(ade_shapes):
    from tools import linear_probe
    _, plain = linear_probe.load_split(ade_shapes, 'validation', 64, 6, False)
    _, reduced = linear_probe.load_split(ade_shapes, 'validation', 64, 6, True)
    assert torch.equal(reduced[plain == 0], torch.full_like(reduced[plain == 0], 255))
    assert torch.equal(reduced[plain > 0], plain[plain > 0] - 1)


def test_probe_tool_names_the_problem_in_bad_data(ade_shapes, tmp_path):
    import shutil
    from tools import linear_probe
    with pytest.raises(ValueError, match='outside 0..1.*--num-classes'):
        linear_probe.main(['--random', 'atto', '--data', str(ade_shapes), '--num-classes', '2',
                           '--image-size', '64', '--out', str(tmp_path / 'out')])
    broken = tmp_path / 'broken'
    shutil.copytree(ade_shapes, broken)
    shutil.rmtree(broken / 'annotations' / 'validation')
    with pytest.raises(FileNotFoundError, match='annotations/validation'):
        linear_probe.main(['--random', 'atto', '--data', str(broken), '--num-classes', '4',
                           '--image-size', '64', '--out', str(tmp_path / 'out')])
    (broken / 'annotations' / 'training' / '000003.png').unlink()
    with pytest.raises(FileNotFoundError, match='000003.*has no label map'):
        linear_probe.load_split(broken, 'training', 64, 12, False)
    with pytest.raises(SystemExit):
        linear_probe.main(['--random', 'atto', '--data', str(ade_shapes), '--num-classes', '4',
                           '--image-size', '60', '--out', str(tmp_path / 'out')])


def test_lever_sweep_probes_only_with_one_worker(tmp_path):
    from tools import fcmae_levers
    written = fcmae_levers.main(['--quick', '--variants', 'grid_8x8', '--no-finetune',
                                 '--workers', '1', '--out', str(tmp_path / 'out'),
                                 '--work-dir', str(tmp_path / 'work')])
    assert {r['name'] for r in written['probes']} == {'grid_8x8', 'random_textured_x2'}
    assert written['finetunes'] == []
    assert written['sweep']['workers'] == 1


def test_a_larger_encoder_is_probed_and_fine_tuned_against_baselines_of_its_own_size(tmp_path):
    from tools import fcmae_levers
    work = tmp_path / 'work'
    written = fcmae_levers.main(['--quick', '--variants', 'pico', '--workers', '1',
                                 '--out', str(tmp_path / 'out'), '--work-dir', str(work)])
    assert {(r['name'], r['arch']) for r in written['probes']} == {
        ('pico', 'pico'), ('random_textured_pico', 'pico')}
    state = torch.load(work / 'pico_backbone.pth', map_location='cpu')['state_dict']
    assert state['stages.0.0.dwconv.weight'].shape[0] == 64  # pico's first stage, not atto's 40
    runs = written['finetunes']
    assert {(r['variant'], r['arch']) for r in runs} == {('scratch', 'pico'), ('pico', 'pico')}
    settings = json.loads((work / 'pico_backbone.json').read_text())['settings']
    assert settings['study']['arch'] == 'pico'


def test_lever_sweep_reuses_a_checkpoint_only_with_the_same_settings(tmp_path):
    from dataclasses import replace
    from tools import fcmae_levers
    out, work = tmp_path / 'out', tmp_path / 'work'
    common = ['--quick', '--variants', 'base', '--work-dir', str(work), '--workers', '1']
    first = fcmae_levers.main(common + ['--no-finetune', '--out', str(out / 'first')])
    checkpoint = work / 'base_backbone.pth'
    assert first['probes'][0]['reused_pretraining'] is False
    # Without the flag the sweep pretrains again; with it, the checkpoint and its record stay.
    first = fcmae_levers.main(common + ['--no-finetune', '--out', str(out / 'again')])
    assert first['probes'][0]['reused_pretraining'] is False
    made = checkpoint.read_bytes()
    second = fcmae_levers.main(common + ['--reuse-pretrained', '--finetune-budgets', '8', '4',
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
    study = fcmae_levers.study_for(fcmae_levers.QUICK, fcmae_levers.VARIANTS[0], quick=True)
    settings = fcmae_levers.pretraining_settings(study, 'textured', True, 1)
    assert fcmae_levers.reusable_pretraining(checkpoint, settings) == base['pretraining']
    for changed in (replace(study, mask_ratio=0.75), replace(study, pretrain_epochs=2)):
        assert fcmae_levers.reusable_pretraining(
            checkpoint, fcmae_levers.pretraining_settings(changed, 'textured', True, 1)) is None
    assert fcmae_levers.reusable_pretraining(
        checkpoint, fcmae_levers.pretraining_settings(study, 'textured', False, 1)) is None
    # A record written before the arch was a lever (no 'arch') stands for atto, never for pico.
    record_file = checkpoint.with_suffix('.json')
    record = json.loads(record_file.read_text())
    del record['settings']['study']['arch']
    record_file.write_text(json.dumps(record))
    assert fcmae_levers.reusable_pretraining(checkpoint, settings) == base['pretraining']
    pico = fcmae_levers.pretraining_settings(replace(study, arch='pico'), 'textured', True, 1)
    assert fcmae_levers.reusable_pretraining(checkpoint, pico) is None
    record_file.unlink()
    assert fcmae_levers.reusable_pretraining(checkpoint, settings) is None


def test_a_pretraining_killed_midway_leaves_no_record_beside_the_checkpoint(tmp_path, monkeypatch):
    from dataclasses import replace
    from tools import fcmae_levers, fcmae_study
    study = fcmae_levers.study_for(fcmae_levers.QUICK, fcmae_levers.VARIANTS[0], quick=True)
    checkpoint = tmp_path / 'base_backbone.pth'
    checkpoint.write_bytes(b'made with mask ratio 0.75')
    old = fcmae_levers.pretraining_settings(replace(study, mask_ratio=0.75), 'textured', True, 1)
    checkpoint.with_suffix('.json').write_text(json.dumps(dict(settings=old, pretraining={})))
    split = fcmae_study.render_split(4, 0, fcmae_study.scene(study))
    monkeypatch.setitem(fcmae_levers._DATA, 'textured',
                        dict(pool=split, heldout=split, val=split))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt('killed while pretraining')
    monkeypatch.setattr(fcmae_study, 'pretrain', killed)
    sweep = replace(fcmae_levers.QUICK, reuse_pretrained=True)
    with pytest.raises(KeyboardInterrupt):
        fcmae_levers._probe_job(('base', 'textured', True, 1, 'atto', study, sweep, str(tmp_path)))
    # The old checkpoint may still be there, but not its record: a later run with the old
    # settings pretrains again instead of trusting a file that may be half replaced.
    assert not checkpoint.with_suffix('.json').exists()
    assert fcmae_levers.reusable_pretraining(checkpoint, old) is None
