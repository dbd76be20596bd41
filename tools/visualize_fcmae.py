"""Show what an FCMAE model reconstructs: one PNG grid per image.

    python tools/visualize_fcmae.py configs/fcmae_cnxv2_t_in1k.py work_dirs/x/epoch_800.pth \\
        img1.jpg img2.png --out vis/
    python tools/visualize_fcmae.py atto work_dirs/my_fcmae/epoch_100.pth photos/*.jpg --out vis/

The first argument is an FCMAE config or an arch name (``atto`` ... ``huge``; with an arch name
the decoder width / depth are read off the checkpoint). Each image is resized (shorter side) and
centre-cropped to ``--image-size``, masked at random (``--mask-ratio``, ``--seed``), and drawn as
four panels: original | masked input | reconstruction of the masked patches | reconstruction
pasted into the visible patches. Writes ``OUT/<image name>_fcmae.png``.
"""
import argparse
import json
import os.path as osp
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import cv2  # noqa: E402
import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from cnxv2_dense.arch import ARCH_SETTINGS, TOTAL_STRIDE  # noqa: E402
from cnxv2_dense.checkpoints import (arch_of, extract_state_dict,  # noqa: E402
                                     fcmae_to_backbone_state_dict, read_checkpoint)
from cnxv2_dense.models import FCMAE  # noqa: E402
from cnxv2_dense.registry import MODELS  # noqa: E402
from cnxv2_dense.utils import allow_mmengine_checkpoints  # noqa: E402

PANEL_TITLES = ('original', 'masked input', 'reconstruction', 'recon. + visible')
MASKED_GREY = 128  # colour of hidden patches in the panels
GAP = 4  # pixels between panels
TITLE_HEIGHT = 18


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config_or_arch', help=f'FCMAE config (.py) or arch name '
                        f'({", ".join(sorted(ARCH_SETTINGS))}) or a JSON arch dict')
    parser.add_argument('checkpoint', help='FCMAE checkpoint (training checkpoint or state dict)')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--image-size', type=int,
                        help='square input side, a multiple of 32 (default: the config\'s crop '
                        'size, else 224)')
    parser.add_argument('--mask-ratio', type=float, help='default: the model\'s (0.6)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random masks')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def _config_image_size(cfg: Config) -> Optional[int]:
    for transform in cfg.get('train_dataloader', {}).get('dataset', {}).get('pipeline', []):
        if str(transform.get('type', '')).endswith('RandomResizedCrop'):
            scale = transform['scale']
            return int(scale if isinstance(scale, int) else scale[0])
    return None


def build_model(config_or_arch: str, state: Dict[str, torch.Tensor]
                ) -> Tuple[FCMAE, Optional[int]]:
    """Build the FCMAE described by a config, an arch name or a JSON arch dict, shaped like
    ``state``; returns it and the config's crop size (None without a config)."""
    if config_or_arch.endswith('.py'):
        cfg = Config.fromfile(config_or_arch)
        model = MODELS.build(cfg.model)
        return model, _config_image_size(cfg)
    arch: Union[str, dict] = (json.loads(config_or_arch) if config_or_arch.lstrip().startswith('{')
                              else config_or_arch)
    decoder_blocks = {int(k.split('.')[1]) for k in state if k.startswith('decoder.')}
    if 'proj.weight' not in state or not decoder_blocks:
        raise ValueError('The checkpoint has no FCMAE decoder (proj / decoder keys); it may be an '
                         'exported backbone, which cannot reconstruct images.')
    model = FCMAE(arch=arch, decoder_dim=int(state['proj.weight'].shape[0]),
                  decoder_depth=len(decoder_blocks))
    return model, None


def load_state(checkpoint: str) -> Dict[str, torch.Tensor]:
    """The model state dict of an FCMAE checkpoint (``module.`` prefixes removed)."""
    allow_mmengine_checkpoints()
    state = extract_state_dict(read_checkpoint(checkpoint))
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def load_image(path: str, size: int) -> np.ndarray:
    """RGB uint8 ``(size, size, 3)``: shorter side resized to ``size``, then centre-cropped."""
    img = mmcv.imread(path, channel_order='rgb')
    if img is None:
        raise ValueError(f'Cannot read image {path}')
    height, width = img.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    img = mmcv.imresize(img, (new_w, new_h), interpolation='bicubic')
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return np.ascontiguousarray(img[top:top + size, left:left + size])


def _to_uint8(img: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """Normalised ``(3, H, W)`` RGB -> ``(H, W, 3)`` uint8."""
    img = img.float().cpu() * std.view(-1, 1, 1) + mean.view(-1, 1, 1)
    return img.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)


def compose_grid(panels: Sequence[np.ndarray], titles: Sequence[str] = PANEL_TITLES) -> np.ndarray:
    """Panels side by side on white with a title strip; RGB uint8."""
    height, width = panels[0].shape[:2]
    canvas = np.full((height + TITLE_HEIGHT, len(panels) * (width + GAP) - GAP, 3), 255, np.uint8)
    font_scale = min(0.45, 0.9 * width / (9 * max(len(t) for t in titles)))
    for index, (panel, title) in enumerate(zip(panels, titles)):
        left = index * (width + GAP)
        canvas[TITLE_HEIGHT:, left:left + width] = panel
        cv2.putText(canvas, title, (left + 2, TITLE_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def visualize(model: FCMAE, images: Sequence[str], out_dir: Union[str, Path], image_size: int,
              mask_ratio: Optional[float] = None, seed: int = 0,
              device: str = 'cpu') -> List[Path]:
    """Write one grid PNG per image; returns their paths."""
    if image_size % TOTAL_STRIDE or image_size < TOTAL_STRIDE:
        raise ValueError(f'image size must be a positive multiple of {TOTAL_STRIDE}, got '
                         f'{image_size}')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    preprocessor = model.data_preprocessor
    mean = preprocessor.mean.view(-1).cpu() if preprocessor._enable_normalize else torch.zeros(3)
    std = preprocessor.std.view(-1).cpu() if preprocessor._enable_normalize else torch.ones(3)
    generator = torch.Generator(device=device).manual_seed(seed)
    written: List[Path] = []
    for index, path in enumerate(images):
        rgb = load_image(path, image_size)
        # The preprocessor expects OpenCV's BGR when it converts to RGB (as in training).
        raw = rgb[..., ::-1] if preprocessor._channel_conversion else rgb
        # (H, W, 3) -> (3, H, W)
        tensor = torch.from_numpy(np.ascontiguousarray(raw.transpose(2, 0, 1)))
        with torch.no_grad():
            inputs = preprocessor(dict(inputs=[tensor]), False)['inputs']
            mask = model.gen_random_mask(inputs, mask_ratio, generator=generator)
            out = model.reconstruct(inputs, mask)
        hidden = out['mask_pixels'][0, 0].cpu().numpy().astype(bool)  # (H, W), True = masked
        masked = rgb.copy()
        masked[hidden] = MASKED_GREY
        recon = _to_uint8(out['pred'][0], mean, std)
        recon_masked_only = recon.copy()
        recon_masked_only[~hidden] = MASKED_GREY
        pasted = _to_uint8(out['pasted'][0], mean, std)
        grid = compose_grid([rgb, masked, recon_masked_only, pasted])
        target = out_dir / f'{Path(path).stem}_fcmae.png'
        if target in written:  # two inputs with the same name
            target = out_dir / f'{Path(path).stem}_{index}_fcmae.png'
        mmcv.imwrite(grid[..., ::-1], str(target))  # RGB -> BGR for OpenCV
        written.append(target)
    return written


def main(argv: Optional[List[str]] = None) -> List[Path]:
    args = parse_args(argv)
    state = load_state(args.checkpoint)
    model, config_size = build_model(args.config_or_arch, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        depths, dims = arch_of(fcmae_to_backbone_state_dict(state))
        raise ValueError(f'{args.checkpoint} does not fit {args.config_or_arch} (the file holds '
                         f'an encoder with depths {depths}, dims {dims}): '
                         f'{str(err).splitlines()[0]}') from err
    size = args.image_size or config_size or 224
    paths = visualize(model, args.images, args.out, size, args.mask_ratio, args.seed, args.device)
    for path in paths:
        print(f'wrote {path}')
    return paths


if __name__ == '__main__':
    main()
