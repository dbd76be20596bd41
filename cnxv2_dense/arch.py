"""Architecture table and constants of ConvNeXt V2, shared by the models and the checkpoint code.

A leaf module (it imports nothing from the package), so that :mod:`cnxv2_dense.models` and
:mod:`cnxv2_dense.checkpoints` can both read the variants without importing each other.

Paper: "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
Woo et al., CVPR 2023 (arXiv 2301.00808), Table / official code.
"""
from typing import Dict, List, Tuple, Union

# Depths and widths of the published variants (paper Table / official code).
ARCH_SETTINGS: Dict[str, Dict[str, List[int]]] = {
    'atto': dict(depths=[2, 2, 6, 2], dims=[40, 80, 160, 320]),
    'femto': dict(depths=[2, 2, 6, 2], dims=[48, 96, 192, 384]),
    'pico': dict(depths=[2, 2, 6, 2], dims=[64, 128, 256, 512]),
    'nano': dict(depths=[2, 2, 8, 2], dims=[80, 160, 320, 640]),
    'tiny': dict(depths=[3, 3, 9, 3], dims=[96, 192, 384, 768]),
    'base': dict(depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024]),
    'large': dict(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536]),
    'huge': dict(depths=[3, 3, 27, 3], dims=[352, 704, 1408, 2816]),
}
NUM_STAGES = 4
# Total stride of the network: the stem (4) and three 2x downsamples.
TOTAL_STRIDE = 32
# Stride of stage i's feature map: the 4x stem, then a 2x downsample before stages 1-3.
STAGE_STRIDES: Tuple[int, ...] = tuple(TOTAL_STRIDE // 2 ** (NUM_STAGES - 1 - i)
                                       for i in range(NUM_STAGES))


def parse_arch(arch: Union[str, dict]) -> Tuple[List[int], List[int]]:
    """Return ``(depths, dims)`` for an arch name or a ``dict(depths=..., dims=...)``.

    Args:
        arch (str | dict): A key of :data:`ARCH_SETTINGS` or ``dict(depths=[4 ints],
            dims=[4 ints])``.

    Raises:
        ValueError: An unknown name (the message lists the valid ones) or a malformed dict.
        TypeError: Neither a str nor a dict.
    """
    if isinstance(arch, str):
        if arch not in ARCH_SETTINGS:
            raise ValueError(f'Unknown arch {arch!r}; choose one of {sorted(ARCH_SETTINGS)} '
                             'or pass dict(depths=[...4 ints], dims=[...4 ints]).')
        setting = ARCH_SETTINGS[arch]
    elif isinstance(arch, dict):
        setting = arch
    else:
        raise TypeError(f'arch must be a str or dict, got {type(arch).__name__}')
    if set(setting) != {'depths', 'dims'}:
        raise ValueError('An arch dict needs exactly the keys depths and dims, got '
                         f'{sorted(setting)}')
    depths, dims = list(setting['depths']), list(setting['dims'])
    if len(depths) != NUM_STAGES or len(dims) != NUM_STAGES:
        raise ValueError(f'arch needs {NUM_STAGES} depths and {NUM_STAGES} dims, '
                         f'got depths={depths}, dims={dims}')
    if any(int(v) <= 0 for v in depths + dims):
        raise ValueError(f'arch depths and dims must be positive, got depths={depths}, dims={dims}')
    return [int(d) for d in depths], [int(d) for d in dims]
