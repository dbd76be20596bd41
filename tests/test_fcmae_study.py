"""The FCMAE study (experiments/fcmae_study): its data, training loop, choices and results."""
import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from experiments.fcmae_study import common, study, training


def independent_miou(model, split) -> float:
    """mmseg's IoUMetric (not the study's confusion matrix) on ``model``'s predictions."""
    from mmseg.evaluation.metrics import IoUMetric
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('background', 'circle', 'square', 'triangle'))
    with torch.no_grad():
        preds = training.seg_logits(model.eval(), training.normalise(split.images)).argmax(1)
    results = [metric.intersect_and_union(pred, truth.long(), training.NUM_CLASSES, 255)
               for pred, truth in zip(preds, split.labels)]
    return metric.compute_metrics(results)['mIoU']


def fine_tuned_scratch(train, lr: float, settings: training.Study, seed: int = 0):
    """A from-scratch UperNet fine-tuned on ``train`` with ``lr``, built here from the training
    functions (not through the study's jobs, pool, selection or results)."""
    torch.manual_seed(seed)
    model = training.build_segmentor('scratch', None, settings.arch)
    return training.finetune(model, 'scratch', train, lr, settings, seed)


def json_of(settings: training.Study) -> dict:
    """``settings`` as results.json holds them (tuples as lists)."""
    return json.loads(json.dumps(asdict(settings)))


@pytest.fixture
def one_thread():
    """One torch thread, as in the study's workers, so that a run made here repeats one made
    there bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_quick_study_chooses_each_lr_on_held_out_and_reports_val_miou(tmp_path, one_thread):
    out, work = tmp_path / 'out', tmp_path / 'work'
    args = ['--quick', '--lr-grid', '2e-5', '2e-3', '--out', str(out), '--work-dir', str(work)]
    study.main(args)
    written = json.loads((out / 'results.json').read_text())
    assert written['command'] == 'python experiments/fcmae_study/study.py ' + ' '.join(args)
    quick = replace(training.QUICK, lr_grid=(2e-5, 2e-3))
    assert written['details']['study'] == json_of(quick)
    expected = {(arm, b, s) for arm in training.ARMS for b in quick.budgets
                for s in (quick.seeds_smallest if b == min(quick.budgets) else quick.seeds_other)}
    assert {(r['arm'], r['labeled_images'], r['seed']) for r in written['records']} == expected
    assert {p['arm'] for p in written['details']['frozen_backbone_probes']} == {
        'frozen_random', 'frozen_fcmae', 'frozen_fcmae_no_grn'}

    # Scratch's two held-out runs, made again here on the held-out split and scored with
    # mmseg's IoUMetric: the study recorded those scores, chose the lr that scored higher, and
    # trained every val run of scratch with it. (The grid puts 2e-3, which trains, after 2e-5,
    # which barely moves the weights in 6 iterations: the winner is not the first value.)
    spec = training.scene(quick)
    pool = training.render_split(quick.pool, training.SPLIT_SEEDS['pool'], spec)
    heldout = training.render_split(quick.heldout, training.SPLIT_SEEDS['heldout'], spec)
    val = training.render_split(quick.val, training.SPLIT_SEEDS['val'], spec)
    smallest = min(quick.budgets)
    train = training.labeled_subset(pool, smallest, 0)
    scores = {lr: independent_miou(fine_tuned_scratch(train, lr, quick), heldout)
              for lr in quick.lr_grid}
    assert abs(scores[2e-3] - scores[2e-5]) > 0.1, scores  # a real choice, not a tie
    selection = {r['lr']: r for r in written['details']['lr_selection'] if r['arm'] == 'scratch'}
    assert {lr: r['split'] for lr, r in selection.items()} == {lr: 'heldout' for lr in scores}
    for lr, score in scores.items():
        assert selection[lr]['miou'] == pytest.approx(score, abs=0.01)
    winner = max(scores, key=scores.get)
    assert winner == quick.lr_grid[1]  # so a selector that kept the first value would fail
    assert written['details']['chosen_lr']['scratch'] == winner
    val_runs = [r for r in written['details']['val_runs'] if r['arm'] == 'scratch']
    assert {r['lr'] for r in val_runs} == {winner}
    # A val record is the val mIoU of that run (the labels of its seed, the chosen lr).
    record = next(r for r in written['records']
                  if (r['arm'], r['labeled_images'], r['seed']) == ('scratch', smallest, 1))
    model = fine_tuned_scratch(training.labeled_subset(pool, smallest, 1), winner, quick, seed=1)
    assert record['miou'] == pytest.approx(independent_miou(model, val), abs=0.01)

    table = (out / 'results.md').read_text()
    for arm in training.ARMS:
        assert f'| {arm} |' in table
    assert (out / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # Each pretraining exported a backbone that the segmentation config loads.
    for arm in training.PRETRAINED_ARMS:
        state = torch.load(work / f'{arm}_backbone.pth', map_location='cpu')['state_dict']
        assert 'stages.0.0.dwconv.weight' in state
        assert ('stages.0.0.grn.gamma' in state) == training.PRETRAINED_ARMS[arm]


def test_the_held_out_selector_takes_each_groups_best_and_refuses_val_runs():
    runs = [dict(arm=arm, lr=lr, split='heldout', miou=miou)
            for arm, lr, miou in (('a', 1, 30.), ('b', 1, 20.), ('a', 2, 31.), ('b', 2, 20.))]
    # The first of a tie wins (b), as Python's max keeps the first.
    assert common.choose_on_heldout(runs, 'lr', by='arm') == {'a': 2, 'b': 1}
    with pytest.raises(ValueError, match='only held-out runs choose'):
        common.choose_on_heldout(runs + [dict(arm='a', lr=3, split='val', miou=99.)], 'lr',
                                 by='arm')


@pytest.mark.slow
def test_an_arm_subset_runs_only_those_arms_and_pretrains_only_theirs(tmp_path):
    out, work = tmp_path / 'out', tmp_path / 'work'
    written = study.main(['--quick', '--arms', 'scratch', 'fcmae', '--budgets', '16',
                          '--seeds-smallest', '0', '--out', str(out), '--work-dir', str(work)])
    assert {(r['arm'], r['labeled_images']) for r in written['records']} == {
        ('scratch', 16), ('fcmae', 16)}
    assert set(written['details']['pretraining']) == {'fcmae'}
    assert not (work / 'fcmae_no_grn_backbone.pth').exists()
    assert {p['arm'] for p in written['details']['frozen_backbone_probes']} == {
        'frozen_random', 'frozen_fcmae'}
    table = (out / 'results.md').read_text()
    assert '| fcmae |' in table and '| resnet18 |' not in table


def test_scratch_layer_decay_slows_the_random_backbone_only_when_asked():
    model = training.build_segmentor('scratch')
    backbone = {id(p) for p in model.backbone.parameters()}
    stem = id(model.backbone.downsample_layers[0][0].weight)

    def lrs(settings):
        groups = training.build_optimizer(model, 'scratch', 1e-3, settings).optimizer.param_groups
        return {id(p): g['lr'] for g in groups for p in g['params']}

    plain = lrs(training.Study())
    assert list(plain.values()) == pytest.approx([1e-3] * len(plain))
    slowed = lrs(replace(training.Study(), scratch_layer_decay=0.5))
    head = [lr for p, lr in slowed.items() if p not in backbone]
    assert head and head == pytest.approx([1e-3] * len(head))
    # Stage-wise: the stem is the lowest layer, so its lr is the smallest of the backbone's.
    assert slowed[stem] == min(slowed[p] for p in backbone) < 1e-3 * 0.5 ** 3


def test_frozen_backbone_iters_train_the_heads_alone_then_the_whole_model():
    settings = replace(training.QUICK, finetune_iters=4, warmup_iters=1, finetune_batch=2,
                       frozen_backbone_iters=2)
    torch.manual_seed(0)
    model = training.build_segmentor('scratch')
    # What the backbone and a head weight hold, and the backbone's mode, as each step begins.
    seen = []
    head = model.decode_head.conv_seg.weight
    model.backbone.register_forward_pre_hook(lambda m, _: seen.append(
        (m.stages[3][0].pwconv1.weight.detach().clone(), head.detach().clone(), m.training)))
    training.finetune(model, 'scratch', training.render_split(4, 0), 2e-3, settings, seed=0)
    backbone, heads, modes = zip(*seen)
    assert modes == (False, False, True, True)
    assert torch.equal(backbone[0], backbone[1]) and torch.equal(backbone[1], backbone[2])
    assert not torch.equal(backbone[2], backbone[3])  # the first step after the thaw
    assert not torch.equal(heads[0], heads[1])  # the heads train from the first step
    with pytest.raises(ValueError, match='frozen_backbone_iters must be >= 0'):
        training.finetune(model, 'scratch', training.render_split(4, 0), 2e-3,
                          replace(settings, frozen_backbone_iters=-1), seed=0)


def test_a_larger_arch_widens_the_heads_and_loads_its_pretrained_weights(tmp_path):
    from cnxv2_dense.models import ConvNeXtV2
    scratch = training.build_segmentor('scratch', arch='pico')
    assert scratch.backbone.downsample_layers[0][0].out_channels == 64  # atto has 40
    assert list(scratch.decode_head.in_channels) == [64, 128, 256, 512]
    assert scratch.auxiliary_head.in_channels == 256
    logits = training.seg_logits(scratch.eval(), torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, training.NUM_CLASSES, 64, 64)
    torch.manual_seed(1)
    state = ConvNeXtV2(arch='pico').state_dict()
    torch.save(dict(state_dict=state), tmp_path / 'pico.pth')
    tuned = training.build_segmentor('fcmae', tmp_path / 'pico.pth', arch='pico')
    weight = tuned.backbone.stages[2][0].pwconv1.weight
    assert torch.equal(weight, state['stages.2.0.pwconv1.weight'].view_as(weight))


def test_an_arm_subset_without_the_scratch_baseline_is_refused(tmp_path):
    with pytest.raises(ValueError, match="keep 'scratch'"):
        study.main(['--quick', '--arms', 'fcmae', '--out', str(tmp_path / 'out'),
                    '--work-dir', str(tmp_path / 'work')])


def test_the_three_splits_are_disjoint_scenes():
    splits = [training.render_split(20, seed) for seed in training.SPLIT_SEEDS.values()]
    flat = [s.images.flatten(1) for s in splits]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not (flat[i][:, None] == flat[j][None]).all(-1).any()


def test_iou_matches_mmseg_iou_metric():
    from mmseg.evaluation.metrics import IoUMetric
    gen = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 4, (5, 16, 16), generator=gen)
    truths = torch.randint(0, 4, (5, 16, 16), generator=gen)
    truths[truths == 3] = 0  # one class absent from the ground truth
    conf = torch.zeros(4, 4, dtype=torch.long)
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('bg', 'a', 'b', 'c'))
    results = []
    for pred, truth in zip(preds, truths):
        conf += torch.bincount(truth.flatten() * 4 + pred.flatten(), minlength=16).view(4, 4)
        results.append(metric.intersect_and_union(pred, truth, 4, ignore_index=255))
    reference = metric.compute_metrics(results)['mIoU']
    assert training.miou(conf) == pytest.approx(reference, abs=0.01)
    ours = training.iou_per_class(conf).numpy()
    assert np.isfinite(ours).all()  # class 3 is still predicted: IoU 0, not absent


def test_random_resized_crop_keeps_a_constant_image_constant_and_flips():
    gen = torch.Generator().manual_seed(0)
    images = torch.full((4, 3, 32, 32), 0.7)
    out = training.random_resized_crop(images, gen)
    assert out.shape == images.shape
    assert torch.allclose(out, images, atol=1e-6)
    ramp = torch.linspace(0, 1, 32).expand(64, 3, 32, 32).contiguous()
    out = training.random_resized_crop(ramp, gen, scale=(1.0, 1.0))
    slopes = (out[..., -1] - out[..., 0]).mean(dim=(1, 2))
    # Full-area crops keep the ramp's direction or mirror it, both seen in 64 draws.
    assert (slopes > 0.5).any() and (slopes < -0.5).any()


def test_val_images_are_the_val_split_scenes(tmp_path):
    from PIL import Image
    files = study.main(['--write-val-images', str(tmp_path), '--count', '3'])['files']
    val = training.render_split(3, training.SPLIT_SEEDS['val'])
    assert len(files) == 3
    for index, file in enumerate(files):
        pixels = torch.from_numpy(np.asarray(Image.open(file))).permute(2, 0, 1)
        assert torch.equal(pixels, val.images[index])


def test_scene_options_reach_the_rendered_scenes(tmp_path):
    from PIL import Image
    from cnxv2_dense.datasets import SceneSpec
    files = study.main(['--write-val-images', str(tmp_path), '--count', '2',
                              '--radius', '0.2', '0.3', '--max-objects', '2',
                              '--texture-prob', '0'])['files']
    spec = SceneSpec(image_size=128, min_objects=1, max_objects=2, min_radius_frac=0.2,
                     max_radius_frac=0.3, texture_prob=0., clutter=training.Study.clutter)
    expected = training.render_split(2, training.SPLIT_SEEDS['val'], spec)
    default = training.render_split(2, training.SPLIT_SEEDS['val'])
    for index, file in enumerate(files):
        pixels = torch.from_numpy(np.asarray(Image.open(file))).permute(2, 0, 1)
        assert torch.equal(pixels, expected.images[index])
        assert not torch.equal(pixels, default.images[index])
