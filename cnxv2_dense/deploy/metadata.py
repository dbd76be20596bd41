"""The JSON file written beside every exported model: what its input expects, what it returns.

A deployed model is used far from the config that made it; this file carries what the config
knew. Read it with :func:`read_metadata`; :mod:`cnxv2_dense.deploy.runtime` does.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from mmengine.config import Config

FORMAT_VERSION = 1
METADATA_SUFFIX = '.json'


def _test_resize(cfg: Config) -> Optional[Dict[str, Any]]:
    """The test pipeline's ``Resize`` step (scale, keep_ratio), or None."""
    loader = cfg.get('test_dataloader') or {}
    pipeline = (loader.get('dataset') or {}).get('pipeline') or []
    for step in pipeline:
        if str(step.get('type', '')).split('.')[-1] == 'Resize':
            return dict(scale=list(step.get('scale') or []), keep_ratio=bool(
                step.get('keep_ratio', False)))
    return None


def preprocessing(cfg: Config) -> Dict[str, Any]:
    """What the config's test pipeline and data preprocessor do before the network."""
    pre = cfg.model.get('data_preprocessor') or {}
    mean = [float(v) for v in pre.get('mean', (0.0, 0.0, 0.0))]
    std = [float(v) for v in pre.get('std', (1.0, 1.0, 1.0))]
    size = pre.get('size')
    return dict(
        mean=mean, std=std,
        # mmdet / mmseg load BGR and flip to RGB in the preprocessor when bgr_to_rgb is set; the
        # graph takes RGB, so a config without the flip normalises BGR values and wants BGR.
        channel_order='RGB' if pre.get('bgr_to_rgb', False) else 'BGR',
        size_divisor=int(pre.get('size_divisor') or pre.get('pad_size_divisor') or 0) or None,
        pad_to_size=list(size) if size else None,
        test_resize=_test_resize(cfg))


def build_metadata(*, family: str, cfg: Config, config: str, checkpoint: str, onnx_file: str,
                   opset: int, fp16: bool, input_shape: Sequence[Union[int, str]],
                   outputs: List[Dict[str, Any]], classes: Optional[Sequence[str]],
                   extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The metadata dict (see the module docstring); ``input_shape`` uses names for dynamic
    axes (``'batch'``, ``'height'``, ``'width'``)."""
    pre = preprocessing(cfg)
    order = pre['channel_order']
    meta = dict(
        format_version=FORMAT_VERSION,
        family=family,
        model_type=str(cfg.model.get('type')),
        config=config, checkpoint=checkpoint, onnx_file=onnx_file,
        opset=opset, precision='float16 (GRN and LayerNorm statistics in float32)' if fp16
        else 'float32',
        input=dict(
            name='pixels', dtype='float32', shape=list(input_shape), layout='NCHW',
            channel_order=order, value_range=[0, 255],
            normalization='inside the graph: (pixels - mean) / std, mean and std below '
                          f'({order} order)',
            mean=pre['mean'], std=pre['std'],
            resize=pre['test_resize'],
            padding=_padding_note(family, pre)),
        outputs=outputs,
        classes=list(classes) if classes is not None else None)
    if extra:
        meta.update(extra)
    return meta


def _padding_note(family: str, pre: Dict[str, Any]) -> Dict[str, Any]:
    if family == 'detector':
        return dict(where='inside the graph', to_multiple_of=pre['size_divisor'] or 32,
                    note='give the resized image unpadded; the graph pads it (normalised value '
                         '0, as mmdet pads) and clips boxes to the unpadded size')
    return dict(where='before the graph', to_multiple_of=pre['size_divisor'],
                to_size=pre['pad_to_size'], pad_value=pre['mean'],
                note='pad bottom / right with the mean pixel (it normalises to 0, as mmseg pads '
                     'after normalising), then crop the outputs back')


def write_metadata(meta: Dict[str, Any], path: Union[str, Path]) -> None:
    Path(path).write_text(json.dumps(meta, indent=2) + '\n')


def read_metadata(onnx_file: Union[str, Path]) -> Dict[str, Any]:
    """The metadata beside ``onnx_file`` (same name, ``.json``).

    Raises:
        FileNotFoundError: No metadata file; it names the path and how to make one.
    """
    path = Path(onnx_file).with_suffix(METADATA_SUFFIX)
    if not path.is_file():
        raise FileNotFoundError(
            f'{path}: the metadata file tools/export.py writes beside {Path(onnx_file).name} is '
            'missing; keep the .json beside the .onnx file, or export the model again')
    return json.loads(path.read_text())
