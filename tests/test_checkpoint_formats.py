"""Every supported checkpoint layout loads into ConvNeXtV2, safely (cnxv2_dense.checkpoint*).

Independent sources: timm, Hugging Face transformers and mmpretrain build their own models here,
and their state dicts are what gets converted; outputs are then compared with theirs. The
official code base has no installable package: its layouts are stated by a committed manifest,
``tests/data/official_layouts.json`` (key -> shape for atto and tiny, written from the official
model definitions of https://github.com/facebookresearch/ConvNeXt-V2; its ``source`` field names
the files and commit), and where the official tensors go is checked against the official
fine-tuning code's ``remap_checkpoint_keys`` (``utils.py`` of that repository), restated here
element by element. The MinkowskiEngine layout cannot be installed either (the patched fork no
longer builds): besides that remap rule, the test writes random weights in the shapes
MinkowskiEngine stores and runs them through its own small implementation of MinkowskiEngine's
convolution (kernel offsets in MinkowskiEngine's order), never through the converter's rule,
and compares the outputs.
"""
import argparse
import hashlib
import importlib.util
import json
import logging
import math
import re
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub, MMLogger
from safetensors.torch import save_file

from cnxv2_dense import (CheckpointFormatError, CheckpointShapeError, ConvNeXtV2,
                         UnreadableCheckpointError, UnsafeCheckpointError, convert_state_dict,
                         detect_format, guess_arch, load_pretrained_backbone, read_checkpoint,
                         sparse_kernel_to_dense)
from tools import convert_checkpoint

TINY = dict(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])
OUTPUT_NORM = re.compile(r'^norm[0-3]\.')


# ----------------------------------------------------------------------------------- helpers
def require(module: str) -> None:
    """Dependencies pinned for these tests (requirements/tests.txt) are never skipped: a missing
    one fails and says how to install it."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f'{module} is not installed but pinned for this test; install the test '
                    f'requirements: .venv/bin/python -m pip install -r requirements/tests.txt',
                    pytrace=False)


def randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial values everywhere, GRN and LayerNorm affine included (they init to 0 / 1)."""
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(std=0.3)
    return module.eval()


def source_model() -> ConvNeXtV2:
    return randomise(ConvNeXtV2(arch=TINY))


def loaded_model(path: Union[str, Path], arch=None) -> ConvNeXtV2:
    model = ConvNeXtV2(arch=arch or TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    return model.eval()


def assert_backbone_equal(model: ConvNeXtV2, reference: ConvNeXtV2, with_norms: bool) -> None:
    ours, ref = model.state_dict(), reference.state_dict()
    for key, value in ref.items():
        if with_norms or not OUTPUT_NORM.match(key):
            assert torch.equal(ours[key], value), key


def compare_normed(model: ConvNeXtV2, features: List[torch.Tensor], x: torch.Tensor) -> None:
    """Our outputs == our (loaded or initial) output norms applied to reference stage features."""
    with torch.no_grad():
        outs = model(x)
        for i, (out, feat) in enumerate(zip(outs, features)):
            expected = getattr(model, f'norm{i}')(feat)
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records():
    logger = MMLogger.get_current_instance()
    handler = LogRecords()
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


# ---------------------------------------- the official layouts, from the committed manifest
OFFICIAL = json.loads((Path(__file__).parent / 'data' / 'official_layouts.json').read_text())
# Manifest layout -> the format the converter must detect.
OFFICIAL_FORMATS = {'finetuned': 'official-finetuned', 'fcmae_released': 'official-fcmae',
                    'fcmae_model': 'official-sparse'}
OFFICIAL_HEAD = ('norm.', 'head.')  # models/convnextv2.py: final norm and classifier


def official_shapes(layout: str, arch: str) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of one official layout for 'atto' or 'tiny', as the manifest states it."""
    if layout == 'fcmae_released':  # stated as the fine-tuned layout minus some prefixes
        spec = OFFICIAL['fcmae_released']
        return {k: tuple(v) for k, v in OFFICIAL[spec['derived_from']][arch].items()
                if not k.startswith(tuple(spec['without_prefixes']))}
    return {k: tuple(v) for k, v in OFFICIAL[layout][arch].items()}


def official_state(layout: str, arch: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random float32 values under exactly the manifest's keys and shapes."""
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=generator)
            for k, shape in official_shapes(layout, arch).items()}


def remap_regular_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """The official fine-tuning remap of a MinkowskiConvolution kernel, written per element.

    utils.py ``remap_checkpoint_keys`` (facebookresearch/ConvNeXt-V2) turns ``kernel``
    (k*k, in, out) into ``kernel.permute(2, 1, 0).reshape(out, in, k, k).transpose(3, 2)``: entry
    ``[o, i, r, c]`` of that is ``kernel[c * k + r, i, o]``. Built here by indexing, not by the
    permute / reshape / transpose chain the converter uses.
    """
    side = math.isqrt(kernel.shape[0])
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing='ij')
    picked = kernel[cols * side + rows]  # (k, k, in, out): [r, c] holds kernel[c * k + r]
    return picked.permute(3, 2, 0, 1)  # (out, in, k, k)


def remap_depthwise_kernel(kernel: torch.Tensor) -> torch.Tensor:
    """Same for a depthwise kernel (k*k, C): the remap's ``permute(1, 0).reshape(C, 1, k, k)
    .transpose(3, 2)`` has entry ``[ch, 0, r, c] = kernel[c * k + r, ch]``."""
    side = math.isqrt(kernel.shape[0])
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing='ij')
    return kernel[cols * side + rows].permute(2, 0, 1).unsqueeze(1)  # (C, 1, k, k)


# The transforms the manifest's finetune_remap names (utils.py remap_checkpoint_keys).
FINETUNE_TRANSFORMS = {
    'copy': lambda v: v,
    'kernel_regular': remap_regular_kernel,
    'kernel_depthwise': remap_depthwise_kernel,
    'bias_flatten': lambda v: v.reshape(-1),
    'grn_unsqueeze': lambda v: v.unsqueeze(0).unsqueeze(1),
}


def official_finetune_view(layout: str, arch: str,
                           state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The dense official tensors ``state`` stands for, under the dense official names: an FCMAE
    model's state as main_finetune.py --finetune loads it (the manifest's finetune_remap), the
    dense layouts as they are; head and final norm left out (our backbone has neither)."""
    if layout == 'fcmae_model':
        remapped = {}
        for key, (dense_key, transform) in OFFICIAL['finetune_remap'][arch].items():
            if dense_key is not None:
                remapped[dense_key] = FINETUNE_TRANSFORMS[transform](state[key])
        state = remapped
    return {k: v for k, v in state.items() if not k.startswith(OFFICIAL_HEAD)}


def assert_holds_official_values(model: ConvNeXtV2, layout: str, arch: str,
                                 state: Dict[str, torch.Tensor]) -> None:
    """Every backbone tensor except the output norms comes from the official file, with the
    official shape, where the official code's semantics put it: the dense official names are
    ours, and an official GRN (1, 1, 1, C) gamma / beta scales channel c of an (N, H, W, C) map
    (models/utils.py GRN), i.e. our (C,) entry c."""
    official = official_finetune_view(layout, arch, state)
    ours = {k: v for k, v in model.state_dict().items() if not OUTPUT_NORM.match(k)}
    assert set(ours) == set(official)
    for key, value in ours.items():
        expected = official[key]
        if key.endswith(('grn.gamma', 'grn.beta')):
            assert expected.shape[:-1] == (1, 1, 1), key
            expected = expected[0, 0, 0]
        assert value.shape == expected.shape, key
        assert torch.equal(value, expected), key


# ------------------------------- the MinkowskiEngine layout and this project's own layouts
DECODER_DIM = 16


def decoder_keys(encoder_dim: int) -> Dict[str, torch.Tensor]:
    """FCMAE decoder: 1x1 proj, mask token, one ConvNeXt V2 block, 1x1 pred (32*32*3 outputs)."""
    d = DECODER_DIM
    return {'proj.weight': torch.randn(d, encoder_dim, 1, 1), 'proj.bias': torch.randn(d),
            'mask_token': torch.randn(1, d, 1, 1),
            'decoder.0.dwconv.weight': torch.randn(d, 1, 7, 7),
            'decoder.0.pwconv1.weight': torch.randn(4 * d, d),
            'decoder.0.grn.gamma': torch.randn(1, 1, 1, 4 * d),
            'pred.weight': torch.randn(3072, d, 1, 1), 'pred.bias': torch.randn(3072)}


def minkowski_state(depths: List[int], dims: List[int]) -> Dict[str, torch.Tensor]:
    """Random weights laid out as the official MinkowskiEngine FCMAE model's state_dict() holds
    them (official models/convnextv2_sparse.py + MinkowskiEngine's parameter shapes): prefix
    `encoder.`; the stem is a dense Conv2d + LayerNorm; MinkowskiDepthwiseConvolution keeps
    `kernel` (kernel_volume, C) and `bias` (1, C); MinkowskiConvolution `kernel`
    (kernel_volume, in, out) and `bias` (1, out); MinkowskiLayerNorm / MinkowskiLinear wrap
    nn.LayerNorm / nn.Linear as `ln` / `linear`; MinkowskiGRN `gamma` / `beta` (1, C)."""
    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape) * 0.3

    state = {'downsample_layers.0.0.weight': rand(dims[0], 3, 4, 4),
             'downsample_layers.0.0.bias': rand(dims[0]),
             'downsample_layers.0.1.weight': 1 + rand(dims[0]),
             'downsample_layers.0.1.bias': rand(dims[0])}
    for i in range(1, 4):
        state.update({f'downsample_layers.{i}.0.ln.weight': 1 + rand(dims[i - 1]),
                      f'downsample_layers.{i}.0.ln.bias': rand(dims[i - 1]),
                      f'downsample_layers.{i}.1.kernel': rand(2 * 2, dims[i - 1], dims[i]),
                      f'downsample_layers.{i}.1.bias': rand(1, dims[i])})
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        for j in range(depth):
            block = f'stages.{i}.{j}.'
            state.update({block + 'dwconv.kernel': rand(7 * 7, dim),
                          block + 'dwconv.bias': rand(1, dim),
                          block + 'norm.ln.weight': 1 + rand(dim),
                          block + 'norm.ln.bias': rand(dim),
                          block + 'pwconv1.linear.weight': rand(4 * dim, dim),
                          block + 'pwconv1.linear.bias': rand(4 * dim),
                          block + 'grn.gamma': rand(1, 4 * dim),
                          block + 'grn.beta': rand(1, 4 * dim),
                          block + 'pwconv2.linear.weight': rand(dim, 4 * dim),
                          block + 'pwconv2.linear.bias': rand(dim)})
    out = {'encoder.' + key: value for key, value in state.items()}
    out.update(decoder_keys(dims[-1]))
    return out


def minkowski_kernel_offsets(kernel_size: int) -> List[Tuple[int, int]]:
    """Offsets (dh, dw) of a 2-D hyper-cube kernel, in the order MinkowskiEngine indexes the
    kernel's first axis (NVIDIA/MinkowskiEngine src/kernel_region.hpp: the region iterator
    advances the first spatial coordinate fastest). An odd kernel is centred on the output site,
    an even one starts at it.
    The first spatial coordinate is H: MinkowskiEngine's to_sparse orders a dense (N, C, H, W)
    tensor's coordinates as (batch, h, w), and .dense() maps them back the same way."""
    first = -(kernel_size // 2) if kernel_size % 2 else 0
    axis = range(first, first + kernel_size)
    return [(dh, dw) for dw in axis for dh in axis]


def minkowski_conv(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor, kernel_size: int,
                   stride: int) -> torch.Tensor:
    """MinkowskiEngine's convolution on a fully visible (dense) map: output site u gets
    bias + sum_i x(stride * u + offset_i) @ kernel[i] over the input sites that exist (none
    outside the image), with kernel[i] of shape (in, out); a depthwise kernel (K, C) scales
    each channel instead."""
    n, _, h, w = x.shape
    pad = kernel_size // 2 if kernel_size % 2 else 0
    padded = F.pad(x, (pad, pad, pad, pad))
    out_h, out_w = h // stride, w // stride
    out = torch.zeros(n, bias.numel(), out_h, out_w)
    for i, (dh, dw) in enumerate(minkowski_kernel_offsets(kernel_size)):
        rows = slice(pad + dh, pad + dh + stride * out_h, stride)
        cols = slice(pad + dw, pad + dw + stride * out_w, stride)
        patch = padded[:, :, rows, cols]
        if kernel.dim() == 2:  # depthwise: (K, C)
            out += patch * kernel[i].view(1, -1, 1, 1)
        else:  # (K, in, out)
            out += torch.einsum('nchw,co->nohw', patch, kernel[i])
    return out + bias.view(1, -1, 1, 1)


def minkowski_features(state: Dict[str, torch.Tensor], depths: List[int],
                       x: torch.Tensor) -> List[torch.Tensor]:
    """The sparse FCMAE encoder's stage outputs on an unmasked batch of one image, computed from
    the MinkowskiEngine weights as they are stored (paper Sec. 3-4: block = depthwise 7x7 ->
    LayerNorm -> Linear -> GELU -> GRN -> Linear, residual; downsample = LayerNorm -> 2x2 /
    stride 2 conv). One image: the sparse GRN aggregates over all active sites of the batch."""
    assert x.shape[0] == 1

    def p(key: str) -> torch.Tensor:
        return state['encoder.' + key]

    def channel_norm(t: torch.Tensor, prefix: str) -> torch.Tensor:
        t = t.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        t = F.layer_norm(t, t.shape[-1:], p(prefix + 'weight'), p(prefix + 'bias'), 1e-6)
        return t.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)

    x = F.conv2d(x, p('downsample_layers.0.0.weight'), p('downsample_layers.0.0.bias'), stride=4)
    x = channel_norm(x, 'downsample_layers.0.1.')
    features = []
    for i, depth in enumerate(depths):
        if i:
            x = channel_norm(x, f'downsample_layers.{i}.0.ln.')
            x = minkowski_conv(x, p(f'downsample_layers.{i}.1.kernel'),
                               p(f'downsample_layers.{i}.1.bias'), kernel_size=2, stride=2)
        for j in range(depth):
            block = f'stages.{i}.{j}.'
            y = minkowski_conv(x, p(block + 'dwconv.kernel'), p(block + 'dwconv.bias'),
                               kernel_size=7, stride=1)
            y = y.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
            y = F.layer_norm(y, y.shape[-1:], p(block + 'norm.ln.weight'),
                             p(block + 'norm.ln.bias'), 1e-6)
            y = F.gelu(F.linear(y, p(block + 'pwconv1.linear.weight'),
                                p(block + 'pwconv1.linear.bias')))
            # GRN: L2 norm over positions per channel, divided by its mean over channels.
            gx = torch.linalg.vector_norm(y, dim=(1, 2), keepdim=True)
            nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
            y = p(block + 'grn.gamma').view(-1) * (y * nx) + p(block + 'grn.beta').view(-1) + y
            y = F.linear(y, p(block + 'pwconv2.linear.weight'), p(block + 'pwconv2.linear.bias'))
            x = x + y.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        features.append(x)
    return features


def project_fcmae(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """This project's FCMAE model: encoder.<our keys> (no output norms) plus the decoder."""
    out = {f'encoder.{k}': v for k, v in state.items() if not OUTPUT_NORM.match(k)}
    out.update(decoder_keys(64))
    return out


def project_detector(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {f'backbone.{k}': v for k, v in state.items()}
    out.update({'neck.lateral_convs.0.conv.weight': torch.randn(4, 8, 1, 1),
                'rpn_head.rpn_conv.weight': torch.randn(4, 4, 3, 3),
                'data_preprocessor.mean': torch.zeros(3, 1, 1)})
    return out


# This project's own layouts: name -> (writer of the checkpoint object, expected format,
# whether the source has our output norms norm{i}). The official ones come from the manifest.
SYNTHETIC = {
    'cnxv2_dense-fcmae': (lambda s: {'state_dict': project_fcmae(s), 'meta': {'epoch': 1}},
                          'cnxv2_dense-fcmae', False),
    # The FCMAE tool's exported backbone: our keys without output norms, plus a meta block.
    'cnxv2_dense-fcmae-export': (lambda s: {'state_dict': {k: v for k, v in s.items()
                                                           if not OUTPUT_NORM.match(k)},
                                            'meta': {'pretrain': 'FCMAE'}},
                                 'cnxv2_dense', False),
    'cnxv2_dense-model': (lambda s: {'state_dict': project_detector(s), 'meta': {'seed': 0},
                                     'message_hub': _message_hub_state()},
                          'cnxv2_dense-model', True),
}


def _message_hub_state() -> dict:
    """A real mmengine message hub (HistoryBuffer, numpy arrays and scalars), as in training."""
    hub = MessageHub.get_instance('test_checkpoint_formats')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('grad_norm', np.float64(1.5))
    return hub.state_dict()


# ------------------------------------------------------------------------ synthetic layouts
@pytest.mark.parametrize('name', sorted(SYNTHETIC))
def test_synthetic_layouts_load_exactly(name, tmp_path, log_records):
    writer, expected_format, has_norms = SYNTHETIC[name]
    source = source_model()
    path = tmp_path / f'{name}.pth'
    torch.save(writer(source.state_dict()), path)
    model = ConvNeXtV2(arch=TINY)
    report = load_pretrained_backbone(model, path)
    assert report.source_format == expected_format
    assert report.unexpected_keys == []
    expected_missing = [] if has_norms else sorted(k for k in model.state_dict()
                                                   if OUTPUT_NORM.match(k))
    assert sorted(report.missing_keys) == expected_missing
    assert_backbone_equal(model, source, with_norms=has_norms)
    if name == 'cnxv2_dense-fcmae':
        assert {'mask_token', 'proj.weight', 'pred.weight'} <= set(report.dropped_keys)
    if name == 'cnxv2_dense-model':
        assert 'neck.lateral_convs.0.conv.weight' in report.dropped_keys
    text = '\n'.join(r.getMessage() for r in log_records)
    assert f'format: {expected_format}' in text and f'loaded: {report.num_loaded} of' in text
    for key in report.missing_keys:
        assert key in text


# ------------------------------------------------------------------------- official layouts
# (layout, arch, GRN shape): 'dense' keeps the manifest's; 'sparse' stores GRN as (1, C).
OFFICIAL_CASES = [('finetuned', 'atto', 'dense'), ('finetuned', 'tiny', 'dense'),
                  ('fcmae_released', 'atto', 'dense'), ('fcmae_released', 'tiny', 'dense'),
                  # The published pt_only listings do not show the GRN shape (see the manifest's
                  # grn_note): the sparse model's (1, C) must load as well.
                  ('fcmae_released', 'atto', 'sparse'),
                  ('fcmae_model', 'atto', 'dense'), ('fcmae_model', 'tiny', 'dense')]


@pytest.mark.parametrize('layout,arch,grn', OFFICIAL_CASES)
def test_official_layouts_load_every_backbone_tensor(layout, arch, grn, tmp_path, log_records):
    state = official_state(layout, arch)
    if grn == 'sparse':
        state = {k: v.reshape(1, -1) if '.grn.' in k else v for k, v in state.items()}
    path = tmp_path / 'official.pt'
    torch.save({'model': state, 'epoch': 99}, path)  # utils.py save_model keeps it under 'model'
    model = ConvNeXtV2(arch=arch)
    report = load_pretrained_backbone(model, path)
    assert report.source_format == OFFICIAL_FORMATS[layout]
    assert report.unexpected_keys == []
    output_norms = sorted(k for k in model.state_dict() if OUTPUT_NORM.match(k))
    assert sorted(report.missing_keys) == output_norms  # the official files have none
    assert report.num_loaded == len(model.state_dict()) - len(output_norms)
    if layout == 'fcmae_model':  # what main_finetune.py deletes: decoder, mask token, proj, pred
        dropped = [k for k, (dense_key, _) in OFFICIAL['finetune_remap'][arch].items()
                   if dense_key is None]
        assert {'mask_token', 'proj.weight', 'pred.weight', 'decoder.0.grn.gamma'} <= set(dropped)
    else:
        dropped = [k for k in state if k.startswith(OFFICIAL_HEAD)]
    assert report.dropped_keys == sorted(dropped)
    if grn == 'sparse':
        state = {k: v.reshape(1, 1, 1, -1) if '.grn.' in k else v for k, v in state.items()}
    assert_holds_official_values(model, layout, arch, state)
    text = '\n'.join(r.getMessage() for r in log_records)
    assert f'format: {OFFICIAL_FORMATS[layout]}' in text


def test_manifest_agrees_with_the_published_sizes_and_the_official_remap():
    # Official README.md (facebookresearch/ConvNeXt-V2) model table: ConvNeXt V2-A 3.7M and
    # V2-T 28.6M parameters, counted with the 1k head.
    for arch, millions in (('atto', 3.7), ('tiny', 28.6)):
        total = sum(math.prod(shape) for shape in official_shapes('finetuned', arch).values())
        assert round(total / 1e6, 1) == millions, arch
        # main_finetune.py --finetune on an FCMAE model state gives exactly the fine-tuned
        # layout without head and final norm (the fine-tuning model keeps its own head).
        fcmae = {k: torch.empty(shape, device='meta')
                 for k, shape in official_shapes('fcmae_model', arch).items()}
        remapped = official_finetune_view('fcmae_model', arch, fcmae)
        assert {k: tuple(v.shape) for k, v in remapped.items()} == {
            k: v for k, v in official_shapes('fcmae_released', arch).items()}, arch


@pytest.mark.parametrize('shape', [(49, 6), (4, 3, 5), (9, 2, 4)])
def test_sparse_kernels_convert_as_the_official_finetune_remap_does(shape):
    # An independent statement of where each sparse kernel entry goes: the official fine-tuning
    # code's rule (remap_regular_kernel / remap_depthwise_kernel), not a reading of
    # MinkowskiEngine's kernel enumeration.
    kernel = torch.randn(shape)
    expected = (remap_depthwise_kernel if len(shape) == 2 else remap_regular_kernel)(kernel)
    assert torch.equal(sparse_kernel_to_dense(kernel), expected)


def test_minkowski_kernel_rule_on_known_values():
    # By the official remap (utils.py remap_checkpoint_keys), dense [.., r, c] = kernel[c*k + r]:
    # a depthwise (k*k=4, C=1) kernel holding 0..3 gives [[0, 2], [1, 3]].
    depthwise = sparse_kernel_to_dense(torch.arange(4.).reshape(4, 1))
    assert depthwise.tolist() == [[[[0., 2.], [1., 3.]]]]
    # Regular (k*k=4, in=1, out=2) holding 0..7: dense[1, 0, r, c] = kernel[c*2 + r, 0, 1]
    # = 2 * (c*2 + r) + 1.
    regular = sparse_kernel_to_dense(torch.arange(8.).reshape(4, 1, 2))
    assert regular.shape == (2, 1, 2, 2)
    assert regular[1, 0].tolist() == [[1., 5.], [3., 7.]]
    with pytest.raises(CheckpointFormatError, match='not k\\*k'):
        sparse_kernel_to_dense(torch.zeros(5, 3))


def test_minkowski_offsets_follow_minkowski_engine_order():
    # Pins this file's reading of MinkowskiEngine's kernel enumeration (minkowski_kernel_offsets,
    # used by minkowski_conv below): first spatial axis fastest; odd kernels centred, even ones
    # starting at the site. The converter is checked against the official remap above instead.
    assert minkowski_kernel_offsets(3)[:4] == [(-1, -1), (0, -1), (1, -1), (-1, 0)]
    assert minkowski_kernel_offsets(3)[4] == (0, 0)
    assert minkowski_kernel_offsets(2) == [(0, 0), (1, 0), (0, 1), (1, 1)]


def test_minkowski_checkpoint_reproduces_the_sparse_network(tmp_path, log_records):
    state = minkowski_state(TINY['depths'], TINY['dims'])
    path = tmp_path / 'sparse.pth'
    torch.save({'model': state, 'epoch': 3,
                'args': argparse.Namespace(model='convnextv2_atto', lr=1e-3)}, path)
    model = ConvNeXtV2(arch=TINY)
    report = load_pretrained_backbone(model, path)
    assert report.source_format == 'official-sparse' and report.unexpected_keys == []
    assert sorted(report.missing_keys) == sorted(k for k in model.state_dict()
                                                 if OUTPUT_NORM.match(k))
    assert {'mask_token', 'proj.weight', 'pred.weight'} <= set(report.dropped_keys)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = minkowski_features(state, TINY['depths'], x)
    # The checkpoint has no output norms: ours (as initialised) applied to the reference stages.
    compare_normed(model.eval(), expected, x)


# ----------------------------------------------------------------------------------- timm
# Both file kinds and both MLP kinds, in two cases (atto is the slow one).
@pytest.mark.parametrize('variant,suffix', [('atto', '.safetensors'), ('tiny-linear-mlp', '.pth')])
def test_timm_checkpoints_match_timm(variant, suffix, tmp_path):
    if variant == 'atto':  # registered variant: 1x1-conv MLP, fc weights (out, in, 1, 1)
        reference, arch = timm.create_model('convnextv2_atto', num_classes=10), 'atto'
    else:  # nn.Linear MLP, fc weights (out, in)
        reference = timm.create_model('convnextv2_atto', num_classes=10, conv_mlp=False,
                                      depths=TINY['depths'], dims=TINY['dims'])
        arch = TINY
    randomise(reference)
    path = tmp_path / f'timm{suffix}'
    if suffix == '.safetensors':
        save_file(reference.state_dict(), str(path))
    else:
        torch.save(reference.state_dict(), path)
    model = ConvNeXtV2(arch=arch)
    report = load_pretrained_backbone(model, path)
    assert report.source_format == 'timm'
    assert report.dropped_keys == ['head.fc.bias', 'head.fc.weight', 'head.norm.bias',
                                   'head.norm.weight']
    assert report.unexpected_keys == []
    assert all(OUTPUT_NORM.match(k) for k in report.missing_keys)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        # The last four: the stages (timm 1.0.3, the oldest supported, lists the stem first).
        features = reference.forward_intermediates(x, indices=4, intermediates_only=True)
    compare_normed(model.eval(), features, x)


def test_timm_convnext_v1_layer_scale_loads_into_a_v1_backbone(tmp_path):
    reference = randomise(timm.create_model('convnext_atto', depths=TINY['depths'],
                                            dims=TINY['dims']))
    path = tmp_path / 'v1.pth'
    torch.save(reference.state_dict(), path)
    model = ConvNeXtV2(arch=TINY, use_grn=False, layer_scale_init_value=1e-6)
    report = load_pretrained_backbone(model, path)
    assert report.unexpected_keys == [] and all(OUTPUT_NORM.match(k) for k in report.missing_keys)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        # The last four: the stages (timm 1.0.3, the oldest supported, lists the stem first).
        features = reference.forward_intermediates(x, indices=4, intermediates_only=True)
    compare_normed(model.eval(), features, x)


# --------------------------------------------------------------------------- transformers
def test_transformers_backbone_matches_with_output_norms(tmp_path):
    require('transformers')
    from transformers import ConvNextV2Backbone, ConvNextV2Config
    config = ConvNextV2Config(depths=TINY['depths'], hidden_sizes=TINY['dims'],
                              out_features=['stage1', 'stage2', 'stage3', 'stage4'])
    reference = randomise(ConvNextV2Backbone(config))
    path = tmp_path / 'hf_backbone.pth'
    torch.save(reference.state_dict(), path)
    model = loaded_model(path)
    report = convert_state_dict(reference.state_dict())
    assert report.source_format == 'transformers' and report.dropped_keys == []
    # hidden_states_norms.stage{i+1} are our output norms: nothing is missing.
    assert set(report.state_dict) == set(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x).feature_maps
        for ours, ref in zip(model(x), expected):
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_transformers_classifier_safetensors_from_save_pretrained(tmp_path):
    require('transformers')
    from transformers import ConvNextV2Config, ConvNextV2ForImageClassification
    config = ConvNextV2Config(depths=TINY['depths'], hidden_sizes=TINY['dims'], num_labels=5)
    reference = randomise(ConvNextV2ForImageClassification(config))
    reference.save_pretrained(tmp_path / 'hf', safe_serialization=True)  # default from 4.35
    path = tmp_path / 'hf' / 'model.safetensors'
    model = ConvNeXtV2(arch=TINY)
    report = load_pretrained_backbone(model, path)
    assert report.source_format == 'transformers'
    assert report.dropped_keys == ['classifier.bias', 'classifier.weight',
                                   'convnextv2.layernorm.bias', 'convnextv2.layernorm.weight']
    assert report.unexpected_keys == [] and all(OUTPUT_NORM.match(k) for k in report.missing_keys)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # hidden_states[0] is the stem output, then one per stage
        hidden = reference.convnextv2(x, output_hidden_states=True).hidden_states[1:]
    compare_normed(model.eval(), list(hidden), x)


# ----------------------------------------------------------------------------- mmpretrain
@pytest.mark.parametrize('linear_pw_conv', [True, False])
def test_mmpretrain_classifier_checkpoint_matches(linear_pw_conv, tmp_path):
    require('mmpretrain')
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    # NOTE: an earlier test may have left mmdet / mmseg as the current default scope, and the
    # registry then looks for ImageClassifier there; build inside mmpretrain's own scope.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MMPRETRAIN_MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='ConvNeXt',
                          arch=dict(depths=TINY['depths'], channels=TINY['dims']),
                          use_grn=True, layer_scale_init_value=0., out_indices=(0, 1, 2, 3),
                          gap_before_final_norm=False, linear_pw_conv=linear_pw_conv),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=5, in_channels=TINY['dims'][-1])))
    randomise(classifier)
    path = tmp_path / 'mmpretrain.pth'
    torch.save({'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': classifier.state_dict()},
               path)
    model = ConvNeXtV2(arch=TINY)
    report = load_pretrained_backbone(model, path)
    assert report.source_format == 'mmpretrain'
    assert report.missing_keys == [] and report.unexpected_keys == []
    assert report.dropped_keys == ['head.fc.bias', 'head.fc.weight']
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for ours, ref in zip(model.eval()(x), classifier.backbone(x)):
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- idempotence
def _all_sources() -> Dict[str, Dict[str, torch.Tensor]]:
    state = source_model().state_dict()
    sources = {name: _flat(writer(state)) for name, (writer, _, _) in SYNTHETIC.items()}
    sources.update({f'official-{layout}': official_state(layout, 'atto')
                    for layout in OFFICIAL_FORMATS})
    sources['timm'] = timm.create_model('convnextv2_atto', depths=TINY['depths'],
                                        dims=TINY['dims']).state_dict()
    return sources


def _flat(obj: dict) -> Dict[str, torch.Tensor]:
    for key in ('state_dict', 'model'):
        if key in obj:
            return obj[key]
    return obj


def test_conversion_is_idempotent_and_pure():
    for name, state in _all_sources().items():
        before = {k: v.clone() for k, v in state.items()}
        once = convert_state_dict(state)
        twice = convert_state_dict(once.state_dict)
        assert twice.source_format == 'cnxv2_dense' and twice.dropped_keys == [], name
        assert twice.unknown_keys == [] and once.unknown_keys == [], name
        assert twice.state_dict.keys() == once.state_dict.keys(), name
        for key, value in once.state_dict.items():
            assert torch.equal(twice.state_dict[key], value), (name, key)
        assert detect_format(once.state_dict) == 'cnxv2_dense'
        assert state.keys() == before.keys(), name  # the input is left alone
        assert all(torch.equal(state[k], before[k]) for k in state), name


# ------------------------------------------------------------------------- error handling
def test_wrong_arch_names_both_shapes_and_the_variant(tmp_path):
    path = tmp_path / 'atto.pth'
    torch.save({'model': official_state('finetuned', 'atto')}, path)
    with pytest.raises(CheckpointShapeError) as err:
        loaded_model(path, arch='femto')
    message = str(err.value)
    assert '(40, 3, 4, 4)' in message and '(48, 3, 4, 4)' in message
    assert "looks like 'atto'" in message and "'femto'" in message
    assert "arch='atto'" in message


def test_wrong_depth_is_an_error_too(tmp_path):
    path = tmp_path / 'deeper.pth'
    torch.save(ConvNeXtV2(arch=dict(depths=[1, 1, 3, 1], dims=TINY['dims'])).state_dict(), path)
    with pytest.raises(CheckpointShapeError, match=r'\[1, 1, 3, 1\] blocks per stage'):
        loaded_model(path)


class _Custom:  # any class outside the allow-list
    pass


class _SideEffect:
    """Unpickling this would create a file: the weights-only reader must refuse it first."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, 'w'))


def test_pickles_needing_code_are_refused(tmp_path):
    custom = tmp_path / 'custom.pth'
    torch.save({'state_dict': ConvNeXtV2(arch=TINY).state_dict(), 'extra': _Custom()}, custom)
    with pytest.raises(UnsafeCheckpointError, match='_Custom.*arbitrary code'):
        read_checkpoint(custom)
    with pytest.raises(UnsafeCheckpointError):  # through init_cfg as well
        loaded_model(custom)
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _SideEffect(str(marker))}, evil)
    with pytest.raises(UnsafeCheckpointError, match='open'):
        read_checkpoint(evil)
    assert not marker.exists()
    # mmengine checkpoints need getattr(HistoryBuffer, 'mean'); any other getattr stays refused.
    sneaky = tmp_path / 'getattr.pth'
    torch.save({'x': _GetAttr()}, sneaky)
    with pytest.raises(UnsafeCheckpointError, match='__init__'):
        read_checkpoint(sneaky)


class _GetAttr:
    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize('kind', ['truncated-zip', 'text', 'empty', 'binary',
                                  'truncated-safetensors'])
def test_damaged_or_foreign_files_give_clear_errors(kind, tmp_path):
    good = tmp_path / 'good.pth'
    torch.save(ConvNeXtV2(arch=TINY).state_dict(), good)
    data = good.read_bytes()
    if kind == 'truncated-safetensors':
        good_st = tmp_path / 'good.safetensors'
        save_file(ConvNeXtV2(arch=TINY).state_dict(), str(good_st))
        data = good_st.read_bytes()
    contents = {'truncated-zip': data[:len(data) // 2], 'text': b'epoch,loss\n1,0.5\n' * 20,
                'empty': b'', 'binary': bytes(range(1, 256)) * 8,
                'truncated-safetensors': data[:len(data) // 2]}[kind]
    path = tmp_path / (f'{kind}.safetensors' if 'safetensors' in kind else f'{kind}.pth')
    path.write_bytes(contents)
    expected = {'truncated-zip': 'zip archive that is truncated', 'text': "text \\(it starts",
                'empty': 'is empty', 'binary': 'not a PyTorch checkpoint',
                'truncated-safetensors': 'not a readable .safetensors'}[kind]
    with pytest.raises(UnreadableCheckpointError, match=expected):
        read_checkpoint(path)
    with pytest.raises(UnreadableCheckpointError):
        loaded_model(path)


def test_unrecognised_layouts_and_bad_tensors_are_errors():
    with pytest.raises(CheckpointFormatError, match='any supported layout'):
        convert_state_dict({'fc.weight': torch.zeros(2, 2)})
    with pytest.raises(CheckpointFormatError, match='extract_state_dict'):
        convert_state_dict({'state_dict': {'stages.0.0.dwconv.weight': torch.zeros(1)}})
    state = official_state('fcmae_released', 'atto')
    state['stages.0.0.grn.gamma'] = torch.zeros(2, 80)  # not a (1, ..., C) layout
    with pytest.raises(CheckpointFormatError, match=r'stages\.0\.0\.grn\.gamma.*\(2, 80\)'):
        convert_state_dict(state)


def test_guess_arch_from_weights():
    assert guess_arch(ConvNeXtV2(arch='atto').state_dict()) == 'atto'
    assert guess_arch(ConvNeXtV2(arch=TINY).state_dict()) is None


# --------------------------------------------------------------------------- the converter
def test_convert_tool_writes_a_clean_backbone(tmp_path, capsys):
    reference = randomise(timm.create_model('convnextv2_atto', depths=TINY['depths'],
                                            dims=TINY['dims']))
    src = tmp_path / 'timm.pth'
    torch.save(reference.state_dict(), src)
    dst = tmp_path / 'out' / 'backbone.pth'
    convert_checkpoint.main([str(src), str(dst)])
    printed = capsys.readouterr().out
    assert 'format: timm' in printed and 'head.fc.weight' in printed
    written = torch.load(dst, weights_only=True)
    assert set(written) == {'state_dict', 'meta'}
    meta = written['meta']
    assert meta['source_format'] == 'timm' and meta['depths'] == TINY['depths']
    assert meta['source_sha256'] == hashlib.sha256(src.read_bytes()).hexdigest()
    direct = ConvNeXtV2(arch=TINY)
    load_pretrained_backbone(direct, src)
    via_tool = loaded_model(dst)
    assert_backbone_equal(via_tool, direct, with_norms=False)
    # The tool's output is already clean: converting it again changes nothing.
    assert convert_state_dict(written['state_dict']).source_format == 'cnxv2_dense'

    st_dst = tmp_path / 'backbone.safetensors'
    convert_checkpoint.main([str(src), str(st_dst)])
    assert_backbone_equal(loaded_model(st_dst), direct, with_norms=False)


def test_convert_tool_refuses_to_overwrite(tmp_path):
    src = tmp_path / 'in.pth'
    torch.save(ConvNeXtV2(arch=TINY).state_dict(), src)
    original = src.read_bytes()
    for argv in ([str(src), str(src)], [str(src), str(src), '--force'],
                 [str(src), str(tmp_path / '.' / 'in.pth'), '--force']):
        with pytest.raises(SystemExit, match='refusing to overwrite the input'):
            convert_checkpoint.main(argv)
    assert src.read_bytes() == original
    dst = tmp_path / 'out.pth'
    dst.write_bytes(b'keep me')
    with pytest.raises(SystemExit, match='exists; pass --force'):
        convert_checkpoint.main([str(src), str(dst)])
    assert dst.read_bytes() == b'keep me'
    convert_checkpoint.main([str(src), str(dst), '--force'])
    assert torch.load(dst, weights_only=True)['meta']['source_format'] == 'cnxv2_dense'
    bad = tmp_path / 'bad.pth'
    bad.write_text('not a checkpoint')
    with pytest.raises(SystemExit, match='error: .*not a PyTorch checkpoint'):
        convert_checkpoint.main([str(bad), str(tmp_path / 'bad_out.pth')])
    assert not (tmp_path / 'bad_out.pth').exists()


def test_url_checkpoints_are_downloaded_once_then_read_safely(tmp_path, monkeypatch):
    # No network here: the download is a local copy, counted.
    state = official_state('fcmae_released', 'atto')
    served = tmp_path / 'served.pt'
    torch.save({'model': state}, served)
    downloads = []

    def fake_download(url: str, dst: str, progress: bool = True) -> None:
        downloads.append(url)
        Path(dst).write_bytes(served.read_bytes())

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.setattr(torch.hub, 'download_url_to_file', fake_download)
    url = 'https://example.org/convnextv2/pt_only/convnextv2_x_fcmae.pt'
    for _ in range(2):
        model = loaded_model(url, arch='atto')
        assert_holds_official_values(model, 'fcmae_released', 'atto', state)
    assert downloads == [url]
    assert (tmp_path / 'hub' / 'checkpoints' / 'convnextv2_x_fcmae.pt').is_file()
