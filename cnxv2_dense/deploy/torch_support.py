"""What the exporter needs of the installed torch, on every supported version (2.1 up).

- ``torch.onnx.export`` with the TorchScript exporter: torch >= 2.5 takes ``dynamo=`` (and from
  2.9 defaults to the dynamo exporter, which does not call the ``symbolic`` methods of
  :mod:`cnxv2_dense.deploy.onnx_ops`); torch 2.1 - 2.4 have only the TorchScript exporter and
  refuse the keyword.
- ``--fp16`` traces the float16 network on the CPU, which needs float16 convolutions there;
  torch 2.1 has none ("slow_conv2d_cpu" not implemented for 'Half').
"""
import functools
import inspect

import torch
import torch.nn.functional as F


def export_torchscript(*args, **kwargs) -> None:
    """``torch.onnx.export(*args, **kwargs)``, TorchScript exporter."""
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        kwargs['dynamo'] = False
    torch.onnx.export(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def cpu_runs_float16_convolutions() -> bool:
    """Whether this torch convolves float16 tensors on the CPU (tried once on a 1-pixel map)."""
    try:
        F.conv2d(torch.ones(1, 1, 1, 1, dtype=torch.float16),
                 torch.ones(1, 1, 1, 1, dtype=torch.float16))
    except RuntimeError:
        return False
    return True
