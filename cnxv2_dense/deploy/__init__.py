"""Deployment: export trained models to ONNX and run them in ONNX Runtime (``[deploy]`` extra).

- :func:`export_model` (``tools/export.py``): backbone alone, UperNet, Mask R-CNN and Cascade
  Mask R-CNN to standard-op ONNX, float32 or float16 (GRN / LayerNorm statistics in float32),
  checked against PyTorch on the spot, with a metadata ``.json`` beside the ``.onnx`` file.
- :class:`OnnxModel`: the exported file in an ONNX Runtime session (numpy in, numpy out);
  ``OnnxRuntimeDetector`` / ``OnnxRuntimeSegmentor``: the same as mmengine models, so that
  ``tools/test.py`` / ``tools/infer.py --backend onnxruntime`` evaluate and draw it.

onnx and onnxruntime are imported only when used; a missing one names the extra to install.
"""
from .exporter import ExportOptions, ExportResult, default_shape, export_model
from .families import UnsupportedModelError, model_family
from .metadata import read_metadata

__all__ = ['ExportOptions', 'ExportResult', 'OnnxModel', 'UnsupportedModelError',
           'default_shape', 'export_model', 'model_family', 'read_metadata']


def __getattr__(name: str):
    if name == 'OnnxModel':  # needs onnxruntime: imported on first use
        from .runtime import OnnxModel
        return OnnxModel
    raise AttributeError(name)
