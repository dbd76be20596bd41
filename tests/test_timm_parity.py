"""Independent reference: timm's ConvNeXt V2 gives the same stage outputs and parameter counts."""
import re

import pytest
import timm
import torch

from cnxv2_dense.models import ARCH_SETTINGS, ConvNeXtV2

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


@pytest.mark.parametrize('timm_name', ['convnextv2_atto'])
def test_stage_outputs_match_timm_features_only(timm_name):
    reference = timm.create_model(timm_name, pretrained=False, features_only=True).eval()
    # Random non-trivial GRN parameters so the test exercises them (timm inits them to zero).
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if '.grn.' in name:
                param.normal_(std=0.5)
    # features_only flattens module names (stem_0, stages_0); map back to the model's names.
    state = {re.sub(r'^(stem|stages)_(\d)', r'\1.\2', k): v
             for k, v in reference.state_dict().items()}
    ours = ConvNeXtV2(arch=timm_name.split('_')[1]).eval()
    result = ours.load_state_dict(timm_to_ours(state), strict=False)
    assert result.unexpected_keys == []
    assert all(k.startswith('norm') for k in result.missing_keys)  # only our output norms
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


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_parameter_counts_match_timm(arch):
    with torch.device('meta'):
        reference = timm.create_model(f'convnextv2_{arch}', pretrained=False)
        ours = ConvNeXtV2(arch=arch)
    timm_backbone = sum(p.numel() for n, p in reference.named_parameters()
                        if not n.startswith('head.'))
    our_backbone = sum(p.numel() for n, p in ours.named_parameters() if not n.startswith('norm'))
    assert our_backbone == timm_backbone
