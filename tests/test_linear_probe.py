"""The frozen dense linear probe (cnxv2_dense.analysis.linear_probe) on cases with known answers."""
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
