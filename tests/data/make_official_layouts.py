"""Write ``official_layouts.json``: the key -> shape manifest of the official ConvNeXt V2 files.

The manifest states, independently of ``cnxv2_dense.checkpoints``, what the official code base
(https://github.com/facebookresearch/ConvNeXt-V2, commit
d7cc26f7dccc6ba941e76609359d670ed213cb73, read 2026-12-02) puts in its checkpoints, for the
atto and tiny variants. ``tests/test_checkpoint_formats.py`` loads files with exactly these keys
and shapes through the converter. Nothing here imports this project: every pattern below was
written from reading the official module definitions (attribute names, parameter shapes):

- ``models/convnextv2.py`` ``ConvNeXtV2`` / ``Block``: stem ``downsample_layers.0`` =
  ``Sequential(Conv2d(3, dims[0], 4, stride 4), LayerNorm(dims[0]))``; ``downsample_layers.i``
  (i = 1..3) = ``Sequential(LayerNorm(dims[i-1]), Conv2d(dims[i-1], dims[i], 2, stride 2))``;
  ``stages.i.j`` = ``Block(dims[i])`` with ``dwconv`` (depthwise Conv2d 7x7, groups=dim),
  ``norm`` (LayerNorm), ``pwconv1`` (Linear dim -> 4 dim), ``grn`` (GRN(4 dim)), ``pwconv2``
  (Linear 4 dim -> dim); final ``norm`` (nn.LayerNorm(dims[-1])) and ``head``
  (Linear(dims[-1], num_classes), num_classes 1000 by default).
- ``models/utils.py``: ``LayerNorm`` holds ``weight`` / ``bias`` of shape (C,); ``GRN`` holds
  ``gamma`` / ``beta`` of shape (1, 1, 1, C); ``MinkowskiLayerNorm`` wraps ``nn.LayerNorm`` as
  ``ln``; ``MinkowskiGRN`` holds ``gamma`` / ``beta`` of shape (1, C).
- ``models/convnextv2_sparse.py`` ``SparseConvNeXtV2`` / ``Block``: same module names; the stem
  stays dense (Conv2d + LayerNorm); ``downsample_layers.i`` = ``Sequential(MinkowskiLayerNorm,
  MinkowskiConvolution(kernel_size=2, stride=2, bias=True))``; a block has ``dwconv``
  (MinkowskiDepthwiseConvolution, kernel 7, bias), ``norm`` (MinkowskiLayerNorm), ``pwconv1`` /
  ``pwconv2`` (MinkowskiLinear, which wraps ``nn.Linear`` as ``linear``: see the
  ``m.linear.weight`` init in the same file), ``grn`` (MinkowskiGRN); no final norm, no head.
- ``models/fcmae.py`` ``FCMAE``: ``encoder`` (SparseConvNeXtV2, D=2), ``proj`` (Conv2d
  dims[-1] -> decoder_embed_dim, 1x1), ``mask_token`` (1, decoder_embed_dim, 1, 1), ``decoder``
  (``Sequential`` of ``decoder_depth`` dense ``Block(decoder_embed_dim)``), ``pred`` (Conv2d
  decoder_embed_dim -> patch_size**2 * in_chans, 1x1); defaults decoder_depth 1,
  decoder_embed_dim 512, patch_size 32, in_chans 3 (``main_pretrain.py`` keeps them).
- MinkowskiEngine parameter shapes: ``MinkowskiConvolution`` ``kernel`` (kernel_volume, in, out)
  and ``bias`` (1, out) (NVIDIA/MinkowskiEngine ``MinkowskiEngine/MinkowskiConvolution.py``,
  commit 19a3b058366d716b2f689bc8e520bf7ab70cb56d); ``MinkowskiDepthwiseConvolution`` ``kernel``
  (kernel_volume, C) and ``bias`` (1, C) (the patched fork the official INSTALL.md builds,
  shwoo93/MinkowskiEngine ``MinkowskiEngine/MinkowskiDepthwiseConvolution.py``, commit
  d178348253ca5f1b78e12c53d0ced8eb57a1096e); kernel_volume = k * k in 2-D.
- ``utils.py`` ``save_model``: a training checkpoint holds ``model_without_ddp.state_dict()``
  under ``'model'`` (``main_pretrain.py`` saves the FCMAE model, ``main_finetune.py`` the dense
  ConvNeXtV2).
- ``main_finetune.py`` (``--finetune``) deletes every key containing ``decoder``,
  ``mask_token``, ``proj`` or ``pred``, then applies ``utils.py`` ``remap_checkpoint_keys``:
  drop the leading ``encoder.``; a ``*.kernel`` becomes ``*.weight``, 3-D (K, in, out) ->
  ``permute(2, 1, 0).reshape(out, in, k, k).transpose(3, 2)``, 2-D (K, C) ->
  ``permute(1, 0).reshape(C, 1, k, k).transpose(3, 2)``; a key containing ``ln`` or ``linear``
  loses its second-to-last component; then a bias that is not 1-D is flattened and a ``grn``
  tensor gets ``unsqueeze(0).unsqueeze(1)``.

The published pretrain-only files (``pt_only/convnextv2_<size>_1k_224_fcmae.pt``) are not in the
FCMAE model's layout: official issues #47 and #65 (facebookresearch/ConvNeXt-V2) list them with
dense names and shapes (``downsample_layers.1.0.weight`` (C,), ``downsample_layers.1.1.weight``
(out, in, 2, 2), 1-D biases, no ``encoder.`` prefix, no ``ln`` / ``linear`` / ``kernel``), and the
listing in Jacky-Android/convnext-v2-pytorch#2 shows no decoder, ``proj`` or ``mask_token`` keys
in them. They are recorded as the fine-tuned layout without ``norm.*`` / ``head.*`` (the encoder
has neither). Those listings do not show the GRN shape; the manifest records the dense model's
(1, 1, 1, C) and says so.

Run from the repository root: ``python tests/data/make_official_layouts.py``.
"""
import json
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

Shape = List[int]

SOURCE = {
    'repository': 'https://github.com/facebookresearch/ConvNeXt-V2',
    'commit': 'd7cc26f7dccc6ba941e76609359d670ed213cb73',
    'read': '2026-12-02',
    'files': ['models/convnextv2.py', 'models/convnextv2_sparse.py', 'models/fcmae.py',
              'models/utils.py', 'utils.py (save_model, remap_checkpoint_keys)',
              'main_pretrain.py', 'main_finetune.py'],
    'minkowski_engine': [
        'NVIDIA/MinkowskiEngine MinkowskiEngine/MinkowskiConvolution.py @ '
        '19a3b058366d716b2f689bc8e520bf7ab70cb56d: kernel (kernel_volume, in, out), bias (1, out)',
        'shwoo93/MinkowskiEngine MinkowskiEngine/MinkowskiDepthwiseConvolution.py @ '
        'd178348253ca5f1b78e12c53d0ced8eb57a1096e: kernel (kernel_volume, C), bias (1, C)'],
    'released_pretrain_only_files': [
        'https://github.com/facebookresearch/ConvNeXt-V2/issues/47',
        'https://github.com/facebookresearch/ConvNeXt-V2/issues/65',
        'https://github.com/Jacky-Android/convnext-v2-pytorch/issues/2'],
    'written_by': 'tests/data/make_official_layouts.py (patterns read from the files above)',
}
# models/convnextv2.py and models/fcmae.py: convnextv2_atto / convnextv2_tiny.
ARCHES = {'atto': dict(depths=[2, 2, 6, 2], dims=[40, 80, 160, 320]),
          'tiny': dict(depths=[3, 3, 9, 3], dims=[96, 192, 384, 768])}
NUM_CLASSES = 1000  # models/convnextv2.py default; the IN-1K fine-tuned heads
DECODER_DIM, DECODER_DEPTH, PATCH_SIZE, IN_CHANS = 512, 1, 32, 3  # models/fcmae.py defaults


def dense_block(prefix: str, dim: int) -> Dict[str, Shape]:
    """models/convnextv2.py Block(dim)."""
    return OrderedDict([
        (prefix + 'dwconv.weight', [dim, 1, 7, 7]), (prefix + 'dwconv.bias', [dim]),
        (prefix + 'norm.weight', [dim]), (prefix + 'norm.bias', [dim]),
        (prefix + 'pwconv1.weight', [4 * dim, dim]), (prefix + 'pwconv1.bias', [4 * dim]),
        (prefix + 'grn.gamma', [1, 1, 1, 4 * dim]), (prefix + 'grn.beta', [1, 1, 1, 4 * dim]),
        (prefix + 'pwconv2.weight', [dim, 4 * dim]), (prefix + 'pwconv2.bias', [dim]),
    ])


def sparse_block(prefix: str, dim: int) -> Dict[str, Shape]:
    """models/convnextv2_sparse.py Block(dim) (registration order: pwconv2 before grn)."""
    return OrderedDict([
        (prefix + 'dwconv.kernel', [7 * 7, dim]), (prefix + 'dwconv.bias', [1, dim]),
        (prefix + 'norm.ln.weight', [dim]), (prefix + 'norm.ln.bias', [dim]),
        (prefix + 'pwconv1.linear.weight', [4 * dim, dim]),
        (prefix + 'pwconv1.linear.bias', [4 * dim]),
        (prefix + 'pwconv2.linear.weight', [dim, 4 * dim]),
        (prefix + 'pwconv2.linear.bias', [dim]),
        (prefix + 'grn.gamma', [1, 4 * dim]), (prefix + 'grn.beta', [1, 4 * dim]),
    ])


def finetuned(depths: List[int], dims: List[int]) -> Dict[str, Shape]:
    """models/convnextv2.py ConvNeXtV2(depths, dims).state_dict() shapes."""
    out: Dict[str, Shape] = OrderedDict([
        ('downsample_layers.0.0.weight', [dims[0], IN_CHANS, 4, 4]),
        ('downsample_layers.0.0.bias', [dims[0]]),
        ('downsample_layers.0.1.weight', [dims[0]]), ('downsample_layers.0.1.bias', [dims[0]])])
    for i in range(1, 4):
        out[f'downsample_layers.{i}.0.weight'] = [dims[i - 1]]
        out[f'downsample_layers.{i}.0.bias'] = [dims[i - 1]]
        out[f'downsample_layers.{i}.1.weight'] = [dims[i], dims[i - 1], 2, 2]
        out[f'downsample_layers.{i}.1.bias'] = [dims[i]]
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        for j in range(depth):
            out.update(dense_block(f'stages.{i}.{j}.', dim))
    out['norm.weight'], out['norm.bias'] = [dims[-1]], [dims[-1]]
    out['head.weight'], out['head.bias'] = [NUM_CLASSES, dims[-1]], [NUM_CLASSES]
    return out


def fcmae_model(depths: List[int], dims: List[int]) -> Dict[str, Shape]:
    """models/fcmae.py FCMAE(depths, dims).state_dict() shapes (sparse encoder, D=2)."""
    enc: Dict[str, Shape] = OrderedDict([
        ('downsample_layers.0.0.weight', [dims[0], IN_CHANS, 4, 4]),
        ('downsample_layers.0.0.bias', [dims[0]]),
        ('downsample_layers.0.1.weight', [dims[0]]), ('downsample_layers.0.1.bias', [dims[0]])])
    for i in range(1, 4):
        enc[f'downsample_layers.{i}.0.ln.weight'] = [dims[i - 1]]
        enc[f'downsample_layers.{i}.0.ln.bias'] = [dims[i - 1]]
        enc[f'downsample_layers.{i}.1.kernel'] = [2 * 2, dims[i - 1], dims[i]]
        enc[f'downsample_layers.{i}.1.bias'] = [1, dims[i]]
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        for j in range(depth):
            enc.update(sparse_block(f'stages.{i}.{j}.', dim))
    out: Dict[str, Shape] = OrderedDict(('encoder.' + k, v) for k, v in enc.items())
    out['proj.weight'] = [DECODER_DIM, dims[-1], 1, 1]
    out['proj.bias'] = [DECODER_DIM]
    out['mask_token'] = [1, DECODER_DIM, 1, 1]
    for j in range(DECODER_DEPTH):
        out.update(dense_block(f'decoder.{j}.', DECODER_DIM))
    out['pred.weight'] = [PATCH_SIZE ** 2 * IN_CHANS, DECODER_DIM, 1, 1]
    out['pred.bias'] = [PATCH_SIZE ** 2 * IN_CHANS]
    return out


def finetune_remap(key: str, shape: Shape) -> Tuple[Optional[str], str]:
    """(name after main_finetune.py's --finetune loading, transform) for one FCMAE key; name None:
    deleted before remapping. Transform names are explained in TRANSFORMS."""
    if any(word in key for word in ('decoder', 'mask_token', 'proj', 'pred')):
        return None, 'deleted'
    if key.startswith('encoder'):
        key = key.split('.', 1)[1]
    parts = key.split('.')
    if parts[-1] == 'kernel':
        return '.'.join(parts[:-1] + ['weight']), ('kernel_regular' if len(shape) == 3
                                                   else 'kernel_depthwise')
    if 'ln' in key or 'linear' in key:
        parts.pop(-2)
        key = '.'.join(parts)
    if key.endswith('bias') and len(shape) != 1:
        return key, 'bias_flatten'
    if 'grn' in key:
        return key, 'grn_unsqueeze'
    return key, 'copy'


TRANSFORMS = {
    'deleted': 'main_finetune.py removes the key (decoder, mask token, proj, pred)',
    'copy': 'the tensor as is',
    'kernel_regular': '(K, in, out) -> permute(2, 1, 0).reshape(out, in, k, k).transpose(3, 2), '
                      'k = sqrt(K)',
    'kernel_depthwise': '(K, C) -> permute(1, 0).reshape(C, 1, k, k).transpose(3, 2), '
                        'k = sqrt(K)',
    'bias_flatten': '(1, C) -> reshape(-1)',
    'grn_unsqueeze': '(1, C) -> unsqueeze(0).unsqueeze(1), i.e. (1, 1, 1, C)',
}


def manifest() -> dict:
    return {
        'about': 'Key -> shape of the official ConvNeXt V2 checkpoints, written from the '
                 'official model definitions (see source); read by '
                 'tests/test_checkpoint_formats.py. Regenerate with '
                 'python tests/data/make_official_layouts.py.',
        'source': SOURCE,
        'arches': ARCHES,
        'layouts': {
            'finetuned': "{'model': ConvNeXtV2(num_classes=1000).state_dict()}: the official "
                         'fine-tuned files (im1k/*_1k_224_ema.pt, im22k/*_22k_*_ema.pt)',
            'fcmae_model': "{'model': FCMAE().state_dict()} as main_pretrain.py saves it: the "
                           'checkpoints the official (MinkowskiEngine) pretraining writes',
            'fcmae_released': "{'model': ...} of the published pt_only/*_fcmae.pt files: the "
                              'finetuned layout without the keys starting with norm. or head.',
            'finetune_remap': 'for each fcmae_model key: its name after main_finetune.py '
                              '--finetune loading (null: deleted) and the transform applied',
        },
        'fcmae_released': {
            'derived_from': 'finetuned', 'without_prefixes': ['norm.', 'head.'],
            'grn_note': 'the GRN shape of the published files is not shown in the listings '
                        'cited; (1, 1, 1, C) is the dense model\'s (models/utils.py GRN), '
                        '(1, C) the sparse one\'s (MinkowskiGRN)'},
        'transforms': TRANSFORMS,
        'finetuned': {name: finetuned(**arch) for name, arch in ARCHES.items()},
        'fcmae_model': {name: fcmae_model(**arch) for name, arch in ARCHES.items()},
        'finetune_remap': {name: OrderedDict((k, list(finetune_remap(k, v)))
                                             for k, v in fcmae_model(**arch).items())
                           for name, arch in ARCHES.items()},
    }


def main() -> None:
    path = Path(__file__).with_name('official_layouts.json')
    text = json.dumps(manifest(), indent=1)
    # One key per line, each shape on its key's line.
    text = _compact_lists(text)
    path.write_text(text + '\n')
    print(f'wrote {path}')


def _compact_lists(text: str) -> str:
    """Put every JSON list of scalars on one line (json.dumps(indent=...) breaks them up)."""
    out: List[str] = []
    buffer: List[str] = []
    for line in text.split('\n'):
        stripped = line.strip()
        if buffer:
            buffer.append(stripped)
            if stripped.startswith(']'):
                head = buffer[0]
                items = ' '.join(buffer[1:-1])
                out.append(head + items + buffer[-1].lstrip())
                buffer = []
            continue
        if stripped.endswith('['):
            buffer = [line]
            continue
        out.append(line)
    return '\n'.join(out)


if __name__ == '__main__':
    main()
