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
