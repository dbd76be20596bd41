"""Layer ids of ConvNeXt V2 parameters for layer-wise learning-rate decay.

The rules are those of the ConvNeXt dense-task recipes (detection and segmentation code of the
ConvNeXt V1 repo, reused for V2). Parameter names are relative to the backbone
(``downsample_layers.i.*``, ``stages.i.j.*``, ``norm{i}.*``). A parameter with id ``i`` gets the
learning-rate scale ``decay_rate ** (num_layers + 1 - i)``, so everything outside the backbone
(id ``num_layers + 1``) keeps scale 1.
"""
import re
from typing import Sequence

DECAY_TYPES = ('layer_wise', 'stage_wise')

# Stage 2 (the deep one) is split into groups of this many blocks for `layer_wise`.
BLOCKS_PER_LAYER_ID = 3
# Ids below stage 2's groups: stem (0), stage 0 (1), stage 1 and downsample 1 (2), downsample 2 (3).
FIRST_STAGE2_ID = 3

_DOWNSAMPLE = re.compile(r'^downsample_layers\.(\d+)\.')
_STAGE_BLOCK = re.compile(r'^stages\.(\d+)\.(\d+)\.')


def default_num_layers(depths: Sequence[int]) -> int:
    """Number of decay layers implied by the depth of stage 2.

    Stage 2 block ``j`` has id ``3 + j // 3``; stage 3 takes the next id. So depth 9 (tiny) gives
    6 and depth 27 (base and up) gives 12, the values of the published recipes.
    """
    return FIRST_STAGE2_ID + (depths[2] - 1) // BLOCKS_PER_LAYER_ID + 1


def get_layer_id(name: str, num_layers: int, decay_type: str = 'layer_wise') -> int:
    """Layer id of a backbone parameter.

    Args:
        name (str): Parameter name relative to the backbone, e.g. ``stages.2.7.pwconv1.weight``.
        num_layers (int): Id of the last backbone layer; non-backbone names get
            ``num_layers + 1``.
        decay_type (str): ``'layer_wise'`` or ``'stage_wise'``. Defaults to ``'layer_wise'``.

    Returns:
        int: The id, in ``[0, num_layers + 1]``.
    """
    if decay_type not in DECAY_TYPES:
        raise ValueError(f'decay_type must be one of {DECAY_TYPES}, got {decay_type!r}')
    outside = num_layers + 1
    down = _DOWNSAMPLE.match(name)
    block = _STAGE_BLOCK.match(name)
    if decay_type == 'stage_wise':
        if down:
            return 0
        if block:
            return int(block.group(1)) + 1
        return outside
    if down:
        stage = int(down.group(1))
        return {0: 0, 1: 2, 2: 3}.get(stage, num_layers)
    if block:
        stage, index = int(block.group(1)), int(block.group(2))
        if stage == 2:
            return FIRST_STAGE2_ID + index // BLOCKS_PER_LAYER_ID
        return {0: 1, 1: 2}.get(stage, num_layers)
    return outside
