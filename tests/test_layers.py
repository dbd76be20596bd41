import pytest
import torch
import torch.nn.functional as F

from cnxv2_dense.models import GRN, LayerNorm2d, grn_fused, grn_reference

from .conftest import cpu_autocast_supports


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


# Explicit mantissa bits of the low-precision floats (IEEE 754 binary16; bfloat16).
MANTISSA_BITS = {torch.float16: 10, torch.bfloat16: 7}


def spacing(values: torch.Tensor, dtype: torch.dtype, floor: float) -> torch.Tensor:
    """The gap between neighbouring ``dtype`` numbers at ``|values|`` (1 ulp), taken at no less
    than ``|value| = floor``: ``2 ** (floor(log2 |v|) - mantissa bits)``, in float64."""
    magnitude = values.double().abs().clamp_min(floor)
    return torch.exp2(torch.floor(torch.log2(magnitude)) - MANTISSA_BITS[dtype])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_grn_and_layernorm_survive_large_activations_under_autocast(dtype):
    if not cpu_autocast_supports(dtype):
        pytest.skip(f'CPU autocast has no {dtype} in torch {torch.__version__}')
    # Sum of squares over 64x64 positions of values ~300 is ~4e8: far above float16's 65504,
    # and so are the squared deviations from the channel mean that LayerNorm sums (~1e5 each).
    x = (300 * torch.randn(1, 64, 64, 32).abs()).to(dtype)
    naive = x.to(torch.float16).pow(2).sum(dim=(1, 2))
    assert torch.isinf(naive).any(), 'the input must overflow a float16 reduction'
    grn, ln = GRN(32), LayerNorm2d(32)
    for param in (grn.gamma, grn.beta, ln.weight, ln.bias):
        torch.nn.init.normal_(param, std=0.5)
    with torch.autocast('cpu', dtype=dtype):
        out_grn = grn(x)
        out_ln = ln(x.permute(0, 3, 1, 2))
    assert out_grn.dtype == dtype and out_ln.dtype == dtype
    # References in float64 from the same low-precision input.
    ref_grn = naive_grn(x, grn.gamma, grn.beta)
    ref_ln = F.layer_norm(x.double(), (32,), ln.weight.double(), ln.bias.double(), 1e-6)
    # Computed in float32 and rounded once to `dtype`, an output is within half an ulp of `dtype`
    # of the float32 result, which is itself within ~1e-6 relative of float64 (GRN: one L2 norm
    # over 4096 positions and a scale; LayerNorm: mean and variance of 32 channels). So each
    # output must lie within 1 ulp of the float64 reference. Near zero the ulp shrinks below
    # float32's absolute error (~1e-6 on LayerNorm's unit-scale outputs), so it is taken at
    # |value| >= 1/16: 6e-5 for float16, 5e-4 for bfloat16.
    for out, ref in ((out_grn, ref_grn), (out_ln.permute(0, 2, 3, 1), ref_ln)):
        ulps = (out.double() - ref).abs() / spacing(ref, dtype, floor=1 / 16)
        assert torch.isfinite(ulps).all() and (ulps <= 1).all(), ulps.max()


def test_grn_under_autocast_matches_fp32():
    grn = GRN(16)
    torch.nn.init.normal_(grn.gamma)
    x = torch.randn(2, 8, 8, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = grn(x.bfloat16())
    torch.testing.assert_close(out.float(), grn(x.bfloat16().float()), rtol=1e-2, atol=1e-2)


# ----------------------------------------------------------------------- fused GRN
LAYOUTS = {'nhwc': dict(spatial_dims=(1, 2), channel_dim=-1, shape=(2, 5, 6, 12)),
           'nchw': dict(spatial_dims=(2, 3), channel_dim=1, shape=(2, 12, 5, 6))}


def grn_case(layout, masked, dtype=torch.float32):
    """Input, random gamma / beta and (optionally) a 0/1 mask of about half the positions."""
    spec = LAYOUTS[layout]
    x = torch.randn(spec['shape'], dtype=dtype)
    gamma, beta = torch.randn(12, dtype=dtype), torch.randn(12, dtype=dtype)
    visible = None
    if masked:
        mask_shape = list(spec['shape'])
        mask_shape[spec['channel_dim']] = 1
        visible = (torch.rand(mask_shape) > 0.5).to(dtype)
    return x, gamma, beta, visible, dict(eps=1e-6, spatial_dims=spec['spatial_dims'],
                                         channel_dim=spec['channel_dim'])


def grn_outputs_and_grads(grn, x, gamma, beta, visible, kwargs, grad_out):
    inputs = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    out = grn(*inputs, visible=visible, **kwargs)
    out.backward(grad_out)
    return [out.detach()] + [t.grad for t in inputs]


@pytest.mark.parametrize('masked', [False, True])
@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_fused_grn_matches_autograd_in_float32(layout, masked):
    x, gamma, beta, visible, kwargs = grn_case(layout, masked)
    grad_out = torch.randn_like(x)
    fused = grn_outputs_and_grads(grn_fused, x, gamma, beta, visible, kwargs, grad_out)
    reference = grn_outputs_and_grads(grn_reference, x, gamma, beta, visible, kwargs, grad_out)
    assert torch.equal(fused[0], reference[0])  # the same forward ops
    for name, a, b in zip(['dx', 'dgamma', 'dbeta'], fused[1:], reference[1:]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize('masked', [False, True])
@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_fused_grn_passes_gradcheck_in_float64(layout, masked):
    x, gamma, beta, visible, kwargs = grn_case(layout, masked, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (x, gamma, beta)]
    assert torch.autograd.gradcheck(
        lambda *args: grn_fused(*args, visible=visible, **kwargs), inputs)


def test_fused_grn_gradient_of_an_all_zero_channel_is_autograds():
    # G(x) = 0 for a channel: the norm is not differentiable there; torch's norm backward
    # takes 0, and so must the fused backward (no NaN from dividing by G).
    x, gamma, beta, _, kwargs = grn_case('nhwc', masked=False)
    x[0, ..., 3] = 0
    x[1] = 0  # a whole sample at zero: G = 0 everywhere, the denominator is eps alone
    grad_out = torch.randn_like(x)
    fused = grn_outputs_and_grads(grn_fused, x, gamma, beta, None, kwargs, grad_out)
    reference = grn_outputs_and_grads(grn_reference, x, gamma, beta, None, kwargs, grad_out)
    assert all(torch.isfinite(t).all() for t in fused)
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_fused_grn_keeps_only_its_input_for_backward():
    """One full-size tensor (x) saved, besides the (N, 1, 1, C) norm, gamma and the mask."""
    x, gamma, beta, visible, kwargs = grn_case('nhwc', masked=True)
    x.requires_grad_()
    full_size = {}
    for grn in (grn_fused, grn_reference):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t,
                                                      lambda t: t):
            grn(x, gamma.requires_grad_(), beta.requires_grad_(), visible=visible, **kwargs)
        full_size[grn] = {t.data_ptr() for t in saved if t.shape == x.shape}
    assert full_size[grn_fused] == {x.data_ptr()}
    assert len(full_size[grn_reference]) >= 2  # autograd also keeps the masked x * visible


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_fused_grn_under_autocast_computes_in_float32(dtype):
    if not cpu_autocast_supports(dtype):
        pytest.skip(f'CPU autocast has no {dtype} in torch {torch.__version__}')
    x, gamma, beta, _, kwargs = grn_case('nhwc', masked=False)
    x = x.to(dtype)
    grad_out = torch.randn_like(x)
    with torch.autocast('cpu', dtype=dtype):
        fused = grn_outputs_and_grads(grn_fused, x, gamma, beta, None, kwargs, grad_out)
        reference = grn_outputs_and_grads(grn_reference, x, gamma, beta, None, kwargs, grad_out)
    assert fused[0].dtype == dtype and fused[1].dtype == dtype  # out and dx in x's dtype
    assert fused[2].dtype == torch.float32 and fused[3].dtype == torch.float32
    assert torch.equal(fused[0], reference[0])
    # Both compute in float32 from the same low-precision x and dy: gamma / beta gradients
    # agree to float32 rounding; dx is rounded to the low-precision dtype at the end.
    torch.testing.assert_close(fused[1], reference[1])
    for a, b in zip(fused[2:], reference[2:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_grn_module_runs_the_fused_function_unless_told_not_to():
    grn = GRN(12)
    torch.nn.init.normal_(grn.gamma)
    x = torch.randn(2, 5, 6, 12, requires_grad=True)
    assert type(grn(x).grad_fn).__name__ == '_FusedGRNBackward'
    grn.fused = False
    assert type(grn(x).grad_fn).__name__ != '_FusedGRNBackward'
    assert 'fused=False' in repr(grn)
    # A mask that requires grad is differentiated by the autograd reference.
    grn.fused = True
    visible = torch.ones(2, 5, 6, 1, requires_grad=True)
    grn(x, visible).sum().backward()
    assert visible.grad is not None
    with pytest.raises(ValueError, match='does not differentiate the visible mask'):
        grn_fused(x, grn.gamma, grn.beta, 1e-6, (1, 2), -1, visible)
