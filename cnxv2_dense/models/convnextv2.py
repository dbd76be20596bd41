"""ConvNeXt V2 backbone for dense prediction (mmdet / mmseg).

Paper: "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
Woo et al., CVPR 2023 (arXiv 2301.00808). Official code and weights:
https://github.com/facebookresearch/ConvNeXt-V2 (weights CC-BY-NC 4.0).

Parameter names follow the official code (``downsample_layers.i``, ``stages.i.j.dwconv`` ...),
with mmpretrain-style output norms ``norm{i}``; GRN parameters are stored with shape ``(C,)``.
"""
import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import PretrainedInit
from torch import nn

from ..arch import ARCH_SETTINGS, NUM_STAGES, TOTAL_STRIDE, parse_arch
from ..registry import MODELS
from .layer_depth import default_num_layers, get_layer_id
from .layers import GRN, LayerNorm2d, LayerNormLast, memory_format_of

__all__ = ['ARCH_SETTINGS', 'CHANNELS_LAST_DEVICES', 'NUM_STAGES', 'TOTAL_STRIDE', 'parse_arch',
           'ConvNeXtV2Block', 'ConvNeXtV2', 'default_init_cfg']


# The official init of every conv / linear layer: trunc normal std .02 (cut at +-2), zero bias.
DEFAULT_INIT: Dict[str, Any] = dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02,
                                    bias=0.)
# The weight initializer that loads a pretrained checkpoint in any supported layout; registered
# by cnxv2_dense.checkpoints (found through the registry, so models never import that package).
PRETRAINED_INIT = 'cnxv2_dense.PretrainedBackbone'
# Device types on which ``channels_last=None`` (the default) runs the network channels-last.
# NOTE: every block's pointwise half (LayerNorm, the two Linears, GELU, GRN) works on
# (N, H, W, C). On channels-last maps the permutes into and out of that layout are free views;
# on NCHW maps each block pays a copy in LayerNorm and a strided residual add. On CPU the
# oneDNN depthwise 7x7 convolution is also much faster channels-last (measured: see
# docs/speed.md). On CUDA, PyTorch sends every channels-last depthwise conv to cuDNN, and
# cuDNN's half-precision (AMP) kernels are NHWC-native; the CUDA choice is reasoned, not yet
# measured (docs/speed.md). Other backends (mps, xpu, ...) keep NCHW, the layout they all
# support natively. ``channels_last=True / False`` overrides this.
CHANNELS_LAST_DEVICES: Tuple[str, ...] = ('cpu', 'cuda')


def default_init_cfg(init_cfg: Optional[Union[dict, List[dict]]]) -> List[dict]:
    """The init config a :class:`ConvNeXtV2` hands to mmengine.

    The default trunc-normal init (:data:`DEFAULT_INIT`) comes first, then the given entries in
    order, then the ``type='Pretrained'`` ones with their type replaced by
    :data:`PRETRAINED_INIT` (same arguments): last, as mmengine orders its own ``Pretrained``.

    NOTE: why not mmengine's own ``PretrainedInit``: it reads the file with mmengine's
    ``CheckpointLoader`` and loads it with ``strict=False``. It knows no ``.safetensors``, no key
    layout but ours, and no shape check, so an official, timm, mmpretrain or Hugging Face
    checkpoint would load nothing and leave the backbone at random init with only a warning
    listing every key. ``PretrainedBackbone`` is the same mechanism (an mmengine weight
    initializer, run by ``BaseModule.init_weights``) with this project's safe reader and
    converter (:func:`cnxv2_dense.checkpoints.load_pretrained_backbone`).

    Args:
        init_cfg (dict | list[dict], optional): The user's init config.

    Returns:
        list[dict]: A new list; the input is not modified.
    """
    cfgs = [] if init_cfg is None else [init_cfg] if isinstance(init_cfg, dict) else init_cfg
    others, pretrained = [copy.deepcopy(DEFAULT_INIT)], []
    for cfg in cfgs:
        cfg = copy.deepcopy(dict(cfg))
        if cfg.get('type') in ('Pretrained', PretrainedInit):
            pretrained.append(dict(cfg, type=PRETRAINED_INIT))
        else:
            others.append(cfg)
    # mmengine runs a Pretrained entry after all others; it only knows its own type by name.
    return others + pretrained


class ConvNeXtV2Block(nn.Module):
    """ConvNeXt V2 block: dwconv 7x7 -> LN -> Linear(C, 4C) -> GELU -> GRN -> Linear(4C, C).

    With ``use_grn=False`` and ``layer_scale_init_value > 0`` it is the ConvNeXt V1 block.

    Args:
        dim (int): Channels.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        mlp_ratio (int): Hidden width of the MLP over ``dim``. Defaults to 4.
        use_grn (bool): Use GRN after the activation. Defaults to True.
        layer_scale_init_value (float): Init of a per-channel output scale ``gamma``;
            0 disables it (V2). Defaults to 0.
        with_cp (bool): Gradient checkpointing of the block. Defaults to False.
    """

    def __init__(self, dim: int, drop_path_rate: float = 0., mlp_ratio: int = 4,
                 use_grn: bool = True, layer_scale_init_value: float = 0.,
                 with_cp: bool = False) -> None:
        super().__init__()
        hidden = mlp_ratio * dim
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNormLast(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.use_grn = use_grn
        self.grn = GRN(hidden, channels_last=True) if use_grn else nn.Identity()
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = (nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
                      if layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.with_cp = with_cp

    def _pointwise(self, x: torch.Tensor, visible: Optional[torch.Tensor] = None
                   ) -> torch.Tensor:
        """LN -> Linear -> GELU -> GRN -> Linear (-> layer scale) on ``(N, H, W, C)``.

        ``visible`` (``(N, H, W, 1)``, 1 = visible) restricts GRN's statistic to visible positions.
        """
        x = self.act(self.pwconv1(self.norm(x)))
        x = self.grn(x) if visible is None or not self.use_grn else self.grn(x, visible)
        x = self.pwconv2(x)
        return x if self.gamma is None else x * self.gamma

    def _branch(self, x: torch.Tensor, visible: Optional[torch.Tensor]) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        visible_last = None if visible is None else visible.permute(0, 2, 3, 1)  # (N, H, W, 1)
        y = self._pointwise(y, visible_last)
        if visible_last is not None:
            y = y * visible_last  # masked positions leave the branch as zeros
        return self.drop_path(y.permute(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)

    def _branch_visible(self, tokens: torch.Tensor,
                        to_map: Callable[[torch.Tensor], torch.Tensor],
                        to_tokens: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        # Masked positions enter the depthwise conv as the zeros of to_map's map; only the
        # visible outputs go on.
        y = to_tokens(self.dwconv(to_map(tokens)))  # (N, V, C)
        # As (N, V, 1, C), GRN's spatial axes (1, 2) are exactly the V visible tokens of a sample.
        y = self._pointwise(y.unsqueeze(2)).squeeze(2)
        return self.drop_path(y)

    def _run(self, branch: Callable[..., torch.Tensor], x: torch.Tensor, *args) -> torch.Tensor:
        """``x + branch(x, *args)``, gradient-checkpointed when ``with_cp`` is set."""
        if self.with_cp and x.requires_grad:
            return x + cp.checkpoint(branch, x, *args, use_reentrant=False)
        return x + branch(x, *args)

    def forward(self, x: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The block on a full ``(N, C, H, W)`` map.

        Args:
            x (Tensor): ``(N, C, H, W)``. With ``visible``, it must be zero at masked positions
                (the depthwise conv then reads them as zeros, as a sparse conv would).
            visible (Tensor, optional): ``(N, 1, H, W)`` mask, 1 = visible (FCMAE pretraining):
                GRN aggregates over visible positions only and the residual branch is zero at
                masked positions, so the output stays zero there. Defaults to None.

        Returns:
            Tensor: ``(N, C, H, W)``.
        """
        return self._run(self._branch, x, visible)

    def forward_visible(self, tokens: torch.Tensor,
                        to_map: Callable[[torch.Tensor], torch.Tensor],
                        to_tokens: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The block on the visible positions only (FCMAE's fast path).

        Computes the same values as :meth:`forward` with a mask at the visible positions, with
        the pointwise layers and GRN run on the visible tokens alone.

        Args:
            tokens (Tensor): ``(N, V, C)``: the ``V`` visible positions of each sample (the same
                number in every sample).
            to_map (Callable): ``(N, V, C)`` -> ``(N, C, H, W)`` map, zero at masked positions.
            to_tokens (Callable): ``(N, C, H, W)`` -> ``(N, V, C)``, the inverse on visible
                positions.

        Returns:
            Tensor: ``(N, V, C)``.
        """
        return self._run(self._branch_visible, tokens, to_map, to_tokens)


@MODELS.register_module()
class ConvNeXtV2(BaseModule):
    """ConvNeXt V2 backbone returning multi-scale features for mmdet / mmseg.

    Args:
        arch (str | dict): One of ``ARCH_SETTINGS`` (atto ... huge) or
            ``dict(depths=[4 ints], dims=[4 ints])``. Defaults to ``'tiny'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages (0-3, negatives allowed) whose outputs are
            returned, each after its own LayerNorm ``norm{i}``. Defaults to all four.
        frozen_stages (int): -1 freezes nothing; 0 the stem; ``k`` in 1-4 the stem and the first
            ``k`` stages (with their downsample layers). Frozen parts stay in eval mode.
            Defaults to -1.
        drop_path_rate (float): Stochastic depth rate, growing linearly over all blocks from 0
            to this value. Defaults to 0.
        use_grn (bool): GRN in every block (V2). Defaults to True.
        layer_scale_init_value (float): Layer scale init; 0 disables it (V2; V1 used 1e-6).
            Defaults to 0.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        channels_last (bool, optional): Memory format of the stem and stages. None picks the
            fastest for the input's device (:meth:`memory_format_for`: channels-last on CPU and
            CUDA, see :data:`CHANNELS_LAST_DEVICES` and ``docs/speed.md``); True forces a
            channels-last copy of the input, False NCHW. Outputs keep the input's memory
            format whatever runs inside (NCHW in, NCHW-contiguous out), so downstream ops that
            read raw NCHW memory (mmcv's RoIAlign) are safe. Defaults to None.
        init_cfg (dict | list[dict], optional): mmengine init config, run after the default
            trunc-normal init (:func:`default_init_cfg`); ``dict(type='Pretrained',
            checkpoint=PATH[, prefix=...])`` loads pretrained weights in any layout of
            ``docs/checkpoints.md``. Defaults to None (the default init alone).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 drop_path_rate: float = 0.,
                 use_grn: bool = True,
                 layer_scale_init_value: float = 0.,
                 with_cp: bool = False,
                 channels_last: Optional[bool] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=default_init_cfg(init_cfg))
        self.depths, self.dims = parse_arch(arch)
        self.out_indices = self._normalise_out_indices(out_indices)
        if not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f'frozen_stages must be in [-1, {NUM_STAGES}] (-1: nothing, 0: stem, '
                             f'k: stem and first k stages), got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.channels_last = channels_last
        if not 0. <= drop_path_rate < 1.:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}')

        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv2d(in_channels, self.dims[0], kernel_size=4, stride=4),
            LayerNorm2d(self.dims[0], eps=1e-6)))
        for i in range(1, NUM_STAGES):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm2d(self.dims[i - 1], eps=1e-6),
                nn.Conv2d(self.dims[i - 1], self.dims[i], kernel_size=2, stride=2)))

        num_blocks = sum(self.depths)
        # Linear from 0 to drop_path_rate over all blocks (plain floats: no tensor needed).
        rates = [drop_path_rate * j / max(num_blocks - 1, 1) for j in range(num_blocks)]
        self.stages = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            first = sum(self.depths[:i])
            self.stages.append(nn.Sequential(*[
                ConvNeXtV2Block(self.dims[i], drop_path_rate=rates[first + j], use_grn=use_grn,
                                layer_scale_init_value=layer_scale_init_value, with_cp=with_cp)
                for j in range(depth)]))

        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(self.dims[i], eps=1e-6))
        self._freeze_stages()

    @staticmethod
    def _normalise_out_indices(out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        if not indices:
            raise ValueError('out_indices must name at least one stage')
        result = []
        for index in indices:
            if not -NUM_STAGES <= index < NUM_STAGES:
                raise ValueError(f'out_indices must be in [{-NUM_STAGES}, {NUM_STAGES - 1}] '
                                 f'(stages 0-3, negatives count from the end), got {index}')
            result.append(index % NUM_STAGES)
        return tuple(sorted(set(result)))

    @property
    def num_layers(self) -> int:
        """Default number of layer-decay layers for this arch (6 for tiny, 12 for base+)."""
        return default_num_layers(self.depths)

    def get_layer_depth(self, param_name: str, prefix: str = '',
                        decay_type: str = 'layer_wise',
                        num_layers: Optional[int] = None) -> Tuple[int, int]:
        """Layer id of a parameter for layer-wise lr decay.

        Args:
            param_name (str): Parameter name, possibly with ``prefix`` (e.g. ``backbone.``).
            prefix (str): Prefix of backbone parameter names. Defaults to ''.
            decay_type (str): ``'layer_wise'`` or ``'stage_wise'``.
            num_layers (int, optional): Id of the last backbone layer. Defaults to
                :attr:`num_layers`.

        Returns:
            tuple[int, int]: ``(layer_id, max_layer_id)`` where ``max_layer_id = num_layers + 1``
            is also the id of every parameter outside the backbone.
        """
        num_layers = self.num_layers if num_layers is None else num_layers
        if not param_name.startswith(prefix):
            return num_layers + 1, num_layers + 1
        name = param_name[len(prefix):]
        return get_layer_id(name, num_layers, decay_type), num_layers + 1

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules: List[nn.Module] = [self.downsample_layers[0]]
        for i in range(self.frozen_stages):
            modules += [self.downsample_layers[i], self.stages[i]]
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def memory_format_for(self, device: Union[str, torch.device]) -> torch.memory_format:
        """The memory format the stem and stages run in on ``device``.

        Args:
            device (str | torch.device): Where the input lives.

        Returns:
            torch.memory_format: ``torch.channels_last`` or ``torch.contiguous_format``.
        """
        channels_last = self.channels_last
        if channels_last is None:
            channels_last = torch.device(device).type in CHANNELS_LAST_DEVICES
        return torch.channels_last if channels_last else torch.contiguous_format

    def train(self, mode: bool = True) -> 'ConvNeXtV2':
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if x.dim() != 4:
            raise ValueError(f'ConvNeXtV2 expects (N, C, H, W) input, got shape {tuple(x.shape)}')
        if min(x.shape[-2:]) < TOTAL_STRIDE:
            raise ValueError(f'Input sides must be at least {TOTAL_STRIDE} px (the total stride), '
                             f'got {tuple(x.shape[-2:])}; pad or resize the image.')
        out_format = memory_format_of(x)
        x = x.contiguous(memory_format=self.memory_format_for(x.device))
        outs = []
        for i in range(NUM_STAGES):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x).contiguous(memory_format=out_format))
        return tuple(outs)
