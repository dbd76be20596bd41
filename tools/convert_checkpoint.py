"""Convert a ConvNeXt V2 checkpoint in any supported layout to a clean cnxv2_dense backbone.

    python tools/convert_checkpoint.py convnextv2_tiny_1k_224_fcmae.pt work_dirs/tiny_fcmae.pth
    python tools/convert_checkpoint.py model.safetensors work_dirs/hf_tiny.pth --force

Writes ``{'state_dict': <ConvNeXtV2 keys>, 'meta': {'source_format', 'source_sha256', ...}}``
(or a ``.safetensors`` file with the meta as JSON strings when DST ends in ``.safetensors``),
which loads with ``init_cfg=dict(type='Pretrained', checkpoint=DST)``. The source is read safely
(weights only); the input is never overwritten, an existing output only with ``--force``.
Formats: docs/checkpoints.md. Official weights and their copies are CC-BY-NC 4.0.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import sys
import time
from pathlib import Path
from typing import Any, Dict

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402

from cnxv2_dense.checkpoints import (FORMATS, arch_of, convert_state_dict,  # noqa: E402
                                     extract_state_dict, guess_arch, read_checkpoint,
                                     summarise_keys)
from cnxv2_dense.version import __version__  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert (.pth / .pt / .bin / .safetensors)')
    parser.add_argument('dst', help='where to write the backbone checkpoint')
    parser.add_argument('--force', action='store_true', help='overwrite an existing DST')
    return parser.parse_args(argv)


def sha256_of(path: Path, chunk_size: int = 2 ** 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open('rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _check_paths(src: Path, dst: Path, force: bool) -> None:
    if not src.is_file():
        raise SystemExit(f'error: {src} is not a file')
    same = dst.resolve() == src.resolve() or (dst.exists() and osp.samefile(src, dst))
    if same:  # NOTE: even with --force: a failed write would destroy the only copy
        raise SystemExit(f'error: refusing to overwrite the input {src}; choose another DST')
    if dst.exists() and not force:
        raise SystemExit(f'error: {dst} exists; pass --force to overwrite it')


def _save(state: Dict[str, torch.Tensor], meta: Dict[str, Any], dst: Path) -> None:
    """Write next to ``dst`` and rename, so an interrupted run leaves no half-written file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f'.{dst.name}.tmp')
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    try:
        if dst.suffix == '.safetensors':
            from safetensors.torch import save_file
            save_file(state, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
        else:
            torch.save({'state_dict': state, 'meta': meta}, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def main(argv=None) -> Path:
    args = parse_args(argv)
    src, dst = Path(args.src), Path(args.dst)
    _check_paths(src, dst, args.force)
    try:
        result = convert_state_dict(extract_state_dict(read_checkpoint(src)))
    except ValueError as err:  # unsafe, unreadable or unrecognised: say why and stop
        raise SystemExit(f'error: {err}') from None
    if not result.state_dict:
        raise SystemExit(f'error: {src} holds no backbone weights '
                         f'({summarise_keys(result.dropped_keys)})')
    depths, dims = arch_of(result.state_dict)
    meta = dict(
        source_format=result.source_format, source_file=src.name, source_sha256=sha256_of(src),
        arch=guess_arch(result.state_dict), depths=depths, dims=dims,
        dropped_keys=result.dropped_keys, unknown_keys=result.unknown_keys,
        converter=f'cnxv2_dense {__version__} tools/convert_checkpoint.py',
        converted=time.strftime('%Y-%m-%d %H:%M:%S'))
    _save(result.state_dict, meta, dst)
    print('\n'.join([
        f'{src} -> {dst}',
        f'  format: {result.source_format} - {FORMATS[result.source_format]}',
        f'  arch: {meta["arch"] or "custom"} (depths {depths}, dims {dims})',
        f'  tensors written: {len(result.state_dict)}',
        f'  dropped (not backbone): {summarise_keys(result.dropped_keys)}',
        f'  unrecognised (left out): {summarise_keys(result.unknown_keys)}',
        f'  source sha256: {meta["source_sha256"]}',
    ]))
    return dst


if __name__ == '__main__':
    main()
