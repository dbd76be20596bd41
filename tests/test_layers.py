import pytest
import torch
import torch.nn.functional as F

from cnxv2_dense.models import GRN, LayerNorm2d


def naive_grn(x_nhwc, gamma, beta, eps=1e-6):
    """GRN written from the paper's equations, in float64."""
    x = x_nhwc.double()
    gx = x.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
    nx = gx / (gx.mean(dim=-1, keepdim=True) + eps)
    return gamma.double() * (x * nx) + beta.double() + x


def test_fresh_grn_is_identity():
    x = torch.randn(2, 5, 6, 12)
    assert torch.equal(GRN(12)(x), x)


def test_grn_matches_paper_equations():
    grn = GRN(12)
    torch.nn.init.normal_(grn.gamma)
    torch.nn.init.normal_(grn.beta)
    x = torch.randn(2, 5, 6, 12)
    expected = naive_grn(x, grn.gamma, grn.beta)
    torch.testing.assert_close(grn(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_masked_grn_takes_its_statistic_over_visible_positions_of_each_image():
    grn = GRN(12)
    torch.nn.init.normal_(grn.gamma)
    torch.nn.init.normal_(grn.beta)
    x = torch.randn(2, 4, 5, 12)
    visible = torch.zeros(2, 4, 5, 1)
    visible[0, :2, :3] = 1  # 6 visible positions in image 0
    visible[1, 1:4, 3:5] = 1  # 6 in image 1
    out = grn(x, visible)
    for n in range(2):
        kept = x[n][visible[n, ..., 0].bool()]  # (6, C): the visible positions alone
        # Exactly the paper's GRN on an image made of the visible positions only.
        expected = naive_grn(kept.view(1, 6, 1, 12), grn.gamma, grn.beta).view(6, 12)
        torch.testing.assert_close(out[n][visible[n, ..., 0].bool()].double(), expected,
                                   rtol=1e-5, atol=1e-5)
    # Masked values do not reach visible outputs; without the mask they do.
    noisy = torch.where(visible.bool(), x, 100 * torch.randn_like(x))
    assert torch.equal(grn(noisy, visible)[visible.expand_as(x).bool()],
                       out[visible.expand_as(x).bool()])
    assert not torch.allclose(grn(noisy)[visible.expand_as(x).bool()],
                              grn(x)[visible.expand_as(x).bool()])


def test_grn_layouts_agree():
    last, first = GRN(12, channels_last=True), GRN(12, channels_last=False)
    torch.nn.init.normal_(last.gamma)
    torch.nn.init.normal_(last.beta)
    first.load_state_dict(last.state_dict())
    x = torch.randn(2, 12, 5, 6)
    out_first = first(x)
    out_last = last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(out_first, out_last)


def test_grn_aggregates_per_sample():
    grn = GRN(4)
    torch.nn.init.ones_(grn.gamma)
    x = torch.randn(2, 3, 3, 4)
    both = grn(x)
    alone = grn(x[:1])
    torch.testing.assert_close(both[:1], alone)


def test_layernorm2d_matches_layernorm_over_channels():
    ln2d = LayerNorm2d(6)
    torch.nn.init.normal_(ln2d.weight)
    torch.nn.init.normal_(ln2d.bias)
    x = torch.randn(2, 6, 4, 5)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln2d.weight, ln2d.bias, 1e-6)
    torch.testing.assert_close(ln2d(x), expected.permute(0, 3, 1, 2))
    assert set(ln2d.state_dict()) == {'weight', 'bias'}


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_grn_and_layernorm_survive_large_activations_under_autocast(dtype):
    # Sum of squares over 64x64 positions of values ~300 is ~4e8: far above float16's 65504.
    x = 300 * torch.randn(1, 64, 64, 32).abs()
    naive = x.to(torch.float16).pow(2).sum(dim=(1, 2))
    assert torch.isinf(naive).any(), 'the input must overflow a float16 reduction'
    grn, ln = GRN(32), LayerNorm2d(32)
    torch.nn.init.normal_(grn.gamma, std=0.1)
    with torch.autocast('cpu', dtype=dtype):
        out_grn = grn(x.to(dtype))
        out_ln = ln(x.permute(0, 3, 1, 2).to(dtype))
    assert out_grn.dtype == dtype and out_ln.dtype == dtype
    assert torch.isfinite(out_grn).all() and torch.isfinite(out_ln).all()
    torch.testing.assert_close(out_grn.float(), grn(x), rtol=2e-2, atol=2.0)


def test_grn_under_autocast_matches_fp32():
    grn = GRN(16)
    torch.nn.init.normal_(grn.gamma)
    x = torch.randn(2, 8, 8, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = grn(x.bfloat16())
    torch.testing.assert_close(out.float(), grn(x.bfloat16().float()), rtol=1e-2, atol=1e-2)
