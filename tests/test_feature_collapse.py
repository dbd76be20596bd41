import pytest
import torch

from cnxv2_dense.analysis import block_activation_distances, pairwise_cosine_distance
from cnxv2_dense.models import ConvNeXtV2


def test_identical_channels_have_distance_zero():
    base = torch.rand(2, 1, 50) + 0.1
    x = base.expand(2, 8, 50) * torch.arange(1, 9).view(1, 8, 1)  # same map, positive scales
    assert torch.allclose(pairwise_cosine_distance(x), torch.zeros(2, dtype=torch.float64),
                          atol=1e-12)


@pytest.mark.parametrize('channels', [2, 5, 16])
def test_orthogonal_channels_have_distance_half_of_one_minus_one_over_c(channels):
    # Rows of an orthogonal matrix, scaled differently: pairwise cosines are all 0.
    q, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    x = (q[:channels] * torch.linspace(0.5, 3, channels, dtype=torch.float64)[:, None])[None]
    expected = (1 - 1 / channels) / 2
    assert pairwise_cosine_distance(x).item() == pytest.approx(expected, abs=1e-12)


def test_distance_matches_a_direct_double_loop():
    x = torch.randn(1, 6, 20)
    expected = 0.
    for i in range(6):
        for j in range(6):
            cos = torch.nn.functional.cosine_similarity(x[0, i], x[0, j], dim=0).item()
            expected += (1 - cos) / 2
    assert pairwise_cosine_distance(x).item() == pytest.approx(expected / 36, abs=1e-6)


def test_one_value_per_block_averaged_over_images():
    torch.manual_seed(0)
    model = ConvNeXtV2(arch='atto', out_indices=(3,))
    model.init_weights()
    images = torch.randn(3, 3, 64, 64)
    per_batch = block_activation_distances(model, images, batch_size=3)
    per_image = [block_activation_distances(model, images[i:i + 1]) for i in range(3)]
    assert len(per_batch) == sum(model.depths)
    # The mean over images does not depend on how they are batched.
    for index, value in enumerate(per_batch):
        assert value == pytest.approx(sum(d[index] for d in per_image) / 3, rel=1e-6)
    assert all(0 < v < 0.5 for v in per_batch)
    assert not model._forward_hooks and all(not b.act._forward_hooks
                                            for s in model.stages for b in s)


def test_tool_reads_checkpoints_of_both_block_kinds_and_writes_csv_and_plot(tmp_path):
    import csv

    from PIL import Image

    from tools import feature_collapse
    images = tmp_path / 'images'
    images.mkdir()
    rng = torch.Generator().manual_seed(0)
    for index in range(3):
        pixels = torch.randint(0, 256, (40, 48, 3), generator=rng, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(images / f'{index}.png')
    # An official-layout V1-style checkpoint (no GRN, layer scale) and an FCMAE one with GRN.
    torch.manual_seed(1)
    no_grn = ConvNeXtV2(arch='atto', use_grn=False, layer_scale_init_value=1e-6)
    torch.save({'model': no_grn.state_dict()}, tmp_path / 'v1_like.pth')
    with_grn = ConvNeXtV2(arch='atto')
    torch.save({'state_dict': {f'encoder.{k}': v for k, v in with_grn.state_dict().items()
                               if not k.startswith('norm')}}, tmp_path / 'fcmae_like.pth')
    out = tmp_path / 'out'
    result = feature_collapse.main([str(tmp_path / 'v1_like.pth'), str(tmp_path / 'fcmae_like.pth'),
                                    '--random', 'atto', '--images', str(images), '--out', str(out),
                                    '--image-size', '32'])
    assert list(result) == ['random_init_atto', 'v1_like', 'fcmae_like']
    # The loaded models compute what the originals compute.
    loaded = feature_collapse.backbone_from_checkpoint(str(tmp_path / 'v1_like.pth'))
    assert loaded.stages[0][0].gamma is not None and not loaded.stages[0][0].use_grn
    batch = feature_collapse.load_images(str(images), 32, 3)
    assert result['v1_like'] == pytest.approx(block_activation_distances(no_grn, batch))
    rows = list(csv.DictReader(open(out / 'collapse.csv')))
    assert len(rows) == 3 * 12 and {r['checkpoint'] for r in rows} == set(result)
    assert (out / 'collapse.png').read_bytes()[:4] == b'\x89PNG'
