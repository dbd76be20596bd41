"""Independent reference: timm's ConvNeXt V2 gives the same stage outputs, gradients and
parameter counts, in every layout (``channels_last`` auto / forced on / forced off) and with
the fused GRN as with its autograd reference."""
import re

import pytest
import timm
import torch
import torch.nn.functional as F

from cnxv2_dense.models import ARCH_SETTINGS, GRN, ConvNeXtV2

# timm name -> our name, written out here from the two layouts (independent of the package's
# own checkpoint converters).
TIMM_TO_OURS = [
    (r'^stem\.(\d)\.', r'downsample_layers.0.\1.'),
    (r'^stages\.(\d)\.downsample\.(\d)\.', r'downsample_layers.\1.\2.'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.conv_dw\.', r'stages.\1.\2.dwconv.'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.norm\.', r'stages.\1.\2.norm.'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.mlp\.fc1\.', r'stages.\1.\2.pwconv1.'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.mlp\.fc2\.', r'stages.\1.\2.pwconv2.'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.mlp\.grn\.weight', r'stages.\1.\2.grn.gamma'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.mlp\.grn\.bias', r'stages.\1.\2.grn.beta'),
]


def timm_to_ours(state):
    out = {}
    for key, value in state.items():
        if key.startswith('head.'):
            continue
        for pattern, replacement in TIMM_TO_OURS:
            key = re.sub(pattern, replacement, key)
        if key.endswith(('pwconv1.weight', 'pwconv2.weight')) and value.dim() == 4:
            value = value.flatten(1)  # 1x1 conv (out, in, 1, 1) -> Linear (out, in)
        out[key] = value
    return out


# Every way our backbone can run: the layout flag (None = the default, picked per device) and
# the GRN implementation (fused, or autograd's reference).
PATHS = [pytest.param(channels_last, fused, id=f'channels_last={channels_last}-'
                      f'{"fused" if fused else "reference"}_grn')
         for channels_last in (None, True, False) for fused in (True, False)]


def atto_pair(train: bool, channels_last=None, fused: bool = True, dtype=torch.float32):
    """timm's features_only atto (random non-trivial GRN parameters: timm inits them to zero) and
    our atto with the same weights, in the given layout and GRN implementation."""
    reference = timm.create_model('convnextv2_atto', pretrained=False, features_only=True)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if '.grn.' in name:
                param.normal_(std=0.5)
    # features_only flattens module names (stem_0, stages_0); map back to the model's names.
    state = {re.sub(r'^(stem|stages)_(\d)', r'\1.\2', k): v
             for k, v in reference.state_dict().items()}
    ours = ConvNeXtV2(arch='atto', channels_last=channels_last)
    result = ours.load_state_dict(timm_to_ours(state), strict=False)
    assert result.unexpected_keys == []
    assert all(k.startswith('norm') for k in result.missing_keys)  # only our output norms
    for module in ours.modules():
        if isinstance(module, GRN):
            module.fused = fused
    return reference.to(dtype).train(train), ours.to(dtype).train(train)


@pytest.mark.parametrize('channels_last,fused', PATHS)
def test_stage_outputs_match_timm_features_only(channels_last, fused):
    reference, ours = atto_pair(train=False, channels_last=channels_last, fused=fused)
    for i in range(4):
        norm = getattr(ours, f'norm{i}')
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)

    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        expected = reference(x)
        outs = ours(x)
        for i, (out, feat) in enumerate(zip(outs, expected)):
            torch.testing.assert_close(out, getattr(ours, f'norm{i}')(feat), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels_last,fused', PATHS)
def test_gradients_match_timm_features_only(channels_last, fused, dtype):
    """Backward too: the same loss on both models' stage outputs gives the same gradients for
    the input and every shared parameter (our output norms are identity-initialised here), to
    1e-5 of each gradient's scale in float32 and far closer in float64 (the same math)."""
    reference, ours = atto_pair(train=True, channels_last=channels_last, fused=fused,
                                dtype=dtype)
    x = torch.randn(2, 3, 64, 96, dtype=dtype)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = [torch.randn(2, c, 64 >> (i + 2), 96 >> (i + 2), dtype=dtype)
               for i, c in enumerate(ARCH_SETTINGS['atto']['dims'])]
    tol = 1e-5 if dtype == torch.float32 else 1e-10

    def layer_norm(feat):  # what our identity-initialised output norm{i} computes (eps 1e-6)
        return F.layer_norm(feat.permute(0, 2, 3, 1), feat.shape[1:2],
                            eps=1e-6).permute(0, 3, 1, 2)

    sum((layer_norm(f) * w).sum() for f, w in zip(reference(x_ref), weights)).backward()
    sum((f * w).sum() for f, w in zip(ours(x_ours), weights)).backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=tol, atol=tol)
    reference_grads = timm_to_ours({re.sub(r'^(stem|stages)_(\d)', r'\1.\2', name): param.grad
                                    for name, param in reference.named_parameters()})
    our_params = dict(ours.named_parameters())
    assert set(reference_grads) == {n for n in our_params if not n.startswith('norm')}
    for name, grad in reference_grads.items():
        # Large sums (the stem's weight gradient runs over every pixel) differ in fp32 rounding
        # order, so the tolerance scales with the gradient; a wrong gradient is off by O(1).
        scale = grad.abs().max().item()
        torch.testing.assert_close(our_params[name].grad, grad.reshape(our_params[name].shape),
                                   rtol=tol, atol=tol * scale,
                                   msg=lambda m, name=name: f'{name}: {m}')


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_parameter_counts_match_timm(arch):
    with torch.device('meta'):
        reference = timm.create_model(f'convnextv2_{arch}', pretrained=False)
        ours = ConvNeXtV2(arch=arch)
    timm_backbone = sum(p.numel() for n, p in reference.named_parameters()
                        if not n.startswith('head.'))
    our_backbone = sum(p.numel() for n, p in ours.named_parameters() if not n.startswith('norm'))
    assert our_backbone == timm_backbone
