"""FCMAE: fully convolutional masked-autoencoder pretraining of ConvNeXt V2, in pure PyTorch.

Paper: "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
Woo et al., CVPR 2023 (arXiv 2301.00808), Sec. 2. Official code (MinkowskiEngine sparse
convolutions) and weights: https://github.com/facebookresearch/ConvNeXt-V2 (weights CC-BY-NC 4.0).

The encoder is this project's :class:`ConvNeXtV2`, held as ``self.encoder`` with unchanged
parameter names, so ``encoder.*`` weights load into the detection / segmentation backbone by
stripping the prefix (:func:`fcmae_to_backbone_state_dict`). The decoder follows the official
one: ``proj`` (1x1 conv to ``decoder_dim``), a learnable ``mask_token``, ``decoder`` (ConvNeXt V2
blocks) and ``pred`` (1x1 conv to the 32x32x3 pixels of each stride-32 cell).

Masked positions never influence visible ones. The official code gets this from submanifold
sparse convolutions; here two dense-PyTorch implementations of the same function exist:

* ``'visible'`` (default): every sample keeps the same number ``K`` of patches, so each stage's
  visible positions are gathered into an ``(N, K * p * p, C)`` tensor (``p`` = patch side at that
  stage, positions ordered patch by patch). LayerNorm, both MLP layers, GELU and GRN run on that
  tensor only, and GRN's aggregation over its axis 1 is exactly a per-sample, visible-only L2
  norm. The 7x7 depthwise conv is scattered to a zero-filled map (masked positions read as
  zeros) and only its visible outputs are gathered back. Because the mask grid (32 px) is a
  multiple of every stride, the stem and each 2x2 downsample act on each kept patch alone, so
  they run on the ``(N * K, C, p, p)`` stack of kept patches.
* ``'dense_masked'``: the straightforward reference. Every op runs on the full map and the masked
  positions are zeroed after each op; GRN aggregates with the mask. About 2.5x the pointwise work
  at mask ratio 0.6; kept for tests and ``benchmarks/fcmae_speed.py``.
"""
import copy
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.model import BaseModel
from mmengine.model.weight_init import trunc_normal_
from mmengine.structures import BaseDataElement
from torch import nn

from ..registry import MODELS
from .convnextv2 import NUM_STAGES, TOTAL_STRIDE, ConvNeXtV2, ConvNeXtV2Block
from .layers import GRN, _upcast, fp32_region

# ImageNet mean / std in RGB order, on the 0-255 scale (the official FCMAE normalisation).
IMAGENET_MEAN: Tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD: Tuple[float, float, float] = (58.395, 57.12, 57.375)
ENCODER_IMPLS: Tuple[str, ...] = ('visible', 'dense_masked')
# Stride of stage i's feature map: the 4x stem, then a 2x downsample before stages 1-3.
STAGE_STRIDES: Tuple[int, ...] = tuple(TOTAL_STRIDE // 2 ** (NUM_STAGES - 1 - i)
                                       for i in range(NUM_STAGES))
# Key layout of an FCMAE state dict (a checkpoint-format converter recognises it by these).
ENCODER_PREFIX = 'encoder.'
DECODER_PREFIXES: Tuple[str, ...] = ('proj.', 'mask_token', 'decoder.', 'pred.')
NORM_PIX_EPS = 1e-6


class VisibleLayout(NamedTuple):
    """Where the kept patches of a batch lie on the patch grid (the same for every stage).

    Attributes:
        batch_index (Tensor): ``(N, K)`` sample index of each kept patch.
        rows (Tensor): ``(N, K)`` patch-grid row of each kept patch, ascending raster order.
        cols (Tensor): ``(N, K)`` patch-grid column of each kept patch.
        grid (tuple[int, int]): Patch grid ``(h, w)``.
    """
    batch_index: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    grid: Tuple[int, int]

    @property
    def num_kept(self) -> int:
        return self.rows.shape[1]


def _check_mask_ratio(mask_ratio: float) -> float:
    if not 0. < float(mask_ratio) < 1.:
        raise ValueError(f'mask_ratio must be in (0, 1) (the fraction of patches hidden from the '
                         f'encoder), got {mask_ratio}')
    return float(mask_ratio)


@MODELS.register_module()
class FCMAE(BaseModel):
    """Fully convolutional masked autoencoder with a ConvNeXt V2 encoder.

    ``forward(inputs, mode='loss')`` masks a random ``mask_ratio`` of the ``patch_size`` grid of
    each image, encodes the visible patches, decodes all positions and returns the per-patch
    pixel MSE averaged over masked patches only.

    Args:
        arch (str | dict): Encoder arch, as for :class:`ConvNeXtV2`. Defaults to ``'tiny'``.
        in_channels (int): Image channels. Defaults to 3.
        mask_ratio (float): Fraction of patches masked, in (0, 1). Defaults to 0.6.
        patch_size (int): Side of a mask patch in pixels; a multiple of 32 (the encoder's total
            stride) so that no stem / downsample window straddles a patch border. Defaults to 32.
        decoder_dim (int): Width of the decoder. Defaults to 512.
        decoder_depth (int): Number of ConvNeXt V2 blocks in the decoder. Defaults to 1.
        norm_pix_loss (bool): Normalise each target patch by its own mean / std. Defaults to
            False.
        drop_path_rate (float): Stochastic depth of the encoder. Defaults to 0.
        layer_scale_init_value (float): Encoder layer scale (0 disables it, as in V2).
            Defaults to 0.
        with_cp (bool): Gradient checkpointing of the encoder blocks. Defaults to False.
        encoder_impl (str): ``'visible'`` (visible-only compute) or ``'dense_masked'`` (the
            reference). Both compute the same function. Defaults to ``'visible'``.
        data_preprocessor (dict, optional): Defaults to mmengine's ``ImgDataPreprocessor`` with
            the ImageNet mean / std and BGR -> RGB (images loaded by OpenCV).
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)`` loads an FCMAE
            checkpoint (mmengine's usual handling). Defaults to None.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 mask_ratio: float = 0.6,
                 patch_size: int = 32,
                 decoder_dim: int = 512,
                 decoder_depth: int = 1,
                 norm_pix_loss: bool = False,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 0.,
                 with_cp: bool = False,
                 encoder_impl: str = 'visible',
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImgDataPreprocessor', mean=list(IMAGENET_MEAN),
                                     std=list(IMAGENET_STD), bgr_to_rgb=True)
        super().__init__(data_preprocessor=copy.deepcopy(data_preprocessor),
                         init_cfg=copy.deepcopy(init_cfg))
        self.mask_ratio = _check_mask_ratio(mask_ratio)
        if patch_size <= 0 or patch_size % TOTAL_STRIDE:
            raise ValueError(f'patch_size must be a positive multiple of {TOTAL_STRIDE} (the '
                             'encoder\'s total stride, so each stem / downsample window is fully '
                             f'visible or fully masked), got {patch_size}')
        if decoder_depth < 1 or decoder_dim < 1:
            raise ValueError(f'decoder_dim and decoder_depth must be positive, got '
                             f'{decoder_dim} and {decoder_depth}')
        self.encoder_impl = self._check_impl(encoder_impl)
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.norm_pix_loss = norm_pix_loss

        self.encoder = ConvNeXtV2(arch=arch, in_channels=in_channels, out_indices=(3,),
                                  drop_path_rate=drop_path_rate,
                                  layer_scale_init_value=layer_scale_init_value, with_cp=with_cp)
        # NOTE: the FCMAE encoder has no output norm (like the official one). The backbone
        # always builds one for its out_indices; an Identity keeps its dense forward usable
        # (raw stage-3 features) and keeps an untrained norm out of checkpoints and of DDP.
        self.encoder.norm3 = nn.Identity()
        self.proj = nn.Conv2d(self.encoder.dims[-1], decoder_dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_dim, 1, 1))
        self.decoder = nn.Sequential(*[ConvNeXtV2Block(decoder_dim) for _ in range(decoder_depth)])
        # One prediction per stride-32 cell: its 32 x 32 x in_channels pixels.
        self.pred = nn.Conv2d(decoder_dim, TOTAL_STRIDE ** 2 * in_channels, kernel_size=1)

    @staticmethod
    def _check_impl(impl: str) -> str:
        if impl not in ENCODER_IMPLS:
            raise ValueError(f'encoder_impl must be one of {ENCODER_IMPLS}, got {impl!r}')
        return impl

    # ------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """Official init: trunc-normal(.02) convs / linears, zero biases, mask token N(0, .02).

        A ``Pretrained`` ``init_cfg`` (an FCMAE checkpoint) is loaded by mmengine afterwards.
        """
        self.encoder.init_weights()
        for module in [self.proj, self.decoder, self.pred]:
            for sub in module.modules():
                if isinstance(sub, (nn.Conv2d, nn.Linear)):
                    trunc_normal_(sub.weight, std=.02)
                    if sub.bias is not None:
                        nn.init.zeros_(sub.bias)
        nn.init.normal_(self.mask_token, std=.02)
        if self.init_cfg is not None:
            super().init_weights()

    # ------------------------------------------------------------------ masking
    def _grid(self, imgs: torch.Tensor) -> Tuple[int, int]:
        if imgs.dim() != 4 or imgs.shape[1] != self.in_channels:
            raise ValueError(f'FCMAE expects (N, {self.in_channels}, H, W) images, got shape '
                             f'{tuple(imgs.shape)}')
        height, width = imgs.shape[-2:]
        p = self.patch_size
        if height % p or width % p or height < p or width < p:
            raise ValueError(f'FCMAE needs image sides divisible by the patch size {p}, got '
                             f'{height}x{width}; resize or crop to e.g. '
                             f'{max(p, height // p * p)}x{max(p, width // p * p)}.')
        return height // p, width // p

    def gen_random_mask(self, imgs: torch.Tensor, mask_ratio: Optional[float] = None,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Random patch mask, the same count per sample: ``int(L * (1 - ratio))`` patches kept.

        Args:
            imgs (Tensor): ``(N, C, H, W)`` images (only the shape is used).
            mask_ratio (float, optional): Defaults to ``self.mask_ratio``.
            generator (torch.Generator, optional): For reproducible masks.

        Returns:
            Tensor: ``(N, L)`` float mask over the ``h x w`` patch grid (raster order),
            1 = masked (removed), 0 = visible.
        """
        ratio = self.mask_ratio if mask_ratio is None else _check_mask_ratio(mask_ratio)
        h, w = self._grid(imgs)
        n, num_patches = imgs.shape[0], h * w
        len_keep = int(num_patches * (1 - ratio))
        if not 0 < len_keep < num_patches:
            raise ValueError(f'mask_ratio {ratio} on a {h}x{w} patch grid keeps {len_keep} of '
                             f'{num_patches} patches; at least one must be visible and one '
                             'masked (use larger images or another ratio).')
        noise = torch.rand(n, num_patches, generator=generator,
                           device=generator.device if generator is not None else imgs.device)
        ids_shuffle = torch.argsort(noise.to(imgs.device), dim=1)  # ascending: first ones kept
        mask = torch.ones(n, num_patches, device=imgs.device)
        mask[:, :len_keep] = 0
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        return torch.gather(mask, dim=1, index=ids_restore)  # (N, L), 1 = masked

    @staticmethod
    def upsample_mask(mask: torch.Tensor, scale: int,
                      grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Repeat each patch of an ``(N, L)`` mask ``scale`` times along both axes.

        Args:
            mask (Tensor): ``(N, L)`` patch mask in raster order.
            scale (int): Pixels (or feature positions) per patch side.
            grid (tuple[int, int], optional): Patch grid ``(h, w)``; square if omitted.

        Returns:
            Tensor: ``(N, h * scale, w * scale)``.
        """
        if mask.dim() != 2:
            raise ValueError(f'mask must be (N, L), got shape {tuple(mask.shape)}')
        if grid is None:
            side = int(round(mask.shape[1] ** .5))
            if side * side != mask.shape[1]:
                raise ValueError(f'A mask of {mask.shape[1]} patches is not square; pass grid=')
            grid = (side, side)
        mask = mask.reshape(-1, *grid)  # (N, L) -> (N, h, w)
        return mask.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)

    def _check_mask(self, mask: torch.Tensor, imgs: torch.Tensor) -> Tuple[int, int]:
        grid = self._grid(imgs)
        if mask.shape != (imgs.shape[0], grid[0] * grid[1]):
            raise ValueError(f'mask must be (N, h*w) = ({imgs.shape[0]}, {grid[0] * grid[1]}) for '
                             f'images {tuple(imgs.shape)}, got {tuple(mask.shape)}')
        return grid

    # ------------------------------------------------------------------ patches
    @staticmethod
    def _patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
        n, c, height, width = imgs.shape
        h, w = height // p, width // p
        x = imgs.reshape(n, c, h, p, w, p)
        x = torch.einsum('nchpwq->nhwpqc', x)  # (N, C, h, p, w, p) -> (N, h, w, p, p, C)
        return x.reshape(n, h * w, p * p * c)

    @staticmethod
    def _unpatchify(x: torch.Tensor, p: int, grid: Tuple[int, int], channels: int) -> torch.Tensor:
        n = x.shape[0]
        h, w = grid
        x = x.reshape(n, h, w, p, p, channels)
        x = torch.einsum('nhwpqc->nchpwq', x)  # (N, h, w, p, p, C) -> (N, C, h, p, w, p)
        return x.reshape(n, channels, h * p, w * p)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, L, patch_size**2 * C)``, pixels of a patch in (row, col, C)
        order (the official layout)."""
        self._grid(imgs)
        return self._patchify(imgs, self.patch_size)

    def unpatchify(self, x: torch.Tensor, grid: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """Inverse of :meth:`patchify`; ``grid`` = ``(h, w)`` patches, square if omitted."""
        if grid is None:
            side = int(round(x.shape[1] ** .5))
            grid = (side, side)
        if grid[0] * grid[1] != x.shape[1]:
            raise ValueError(f'{x.shape[1]} patches do not fill a {grid[0]}x{grid[1]} grid')
        return self._unpatchify(x, self.patch_size, grid, self.in_channels)

    def _pred_to_patches(self, pred: torch.Tensor) -> torch.Tensor:
        """``(N, 32*32*C, H/32, W/32)`` decoder output -> ``(N, L, patch_size**2 * C)``."""
        n, _, cell_h, cell_w = pred.shape
        cells = pred.flatten(2).transpose(1, 2)  # (N, 32*32*C, h', w') -> (N, h'*w', 32*32*C)
        if self.patch_size == TOTAL_STRIDE:
            return cells
        imgs = self._unpatchify(cells, TOTAL_STRIDE, (cell_h, cell_w), self.in_channels)
        return self._patchify(imgs, self.patch_size)

    # ------------------------------------------------------------------ encoder
    def forward_encoder(self, imgs: torch.Tensor, mask: Optional[torch.Tensor] = None,
                        impl: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode the visible patches.

        Args:
            imgs (Tensor): ``(N, C, H, W)`` normalised images, sides divisible by ``patch_size``.
            mask (Tensor, optional): ``(N, L)`` patch mask (1 = masked), the same number of
                visible patches in every sample. Drawn with :meth:`gen_random_mask` if omitted.
            impl (str, optional): ``'visible'`` or ``'dense_masked'``; defaults to
                ``self.encoder_impl``.

        Returns:
            tuple[Tensor, Tensor]: stage-3 features ``(N, dims[-1], H/32, W/32)``, zero at masked
            positions, and the mask.
        """
        if mask is None:
            mask = self.gen_random_mask(imgs)
        grid = self._check_mask(mask, imgs)
        impl = self._check_impl(impl or self.encoder_impl)
        if impl == 'visible':
            return self._encode_visible(imgs, mask, grid), mask
        return self._encode_dense_masked(imgs, mask, grid), mask

    @staticmethod
    def _visible_layout(mask: torch.Tensor, grid: Tuple[int, int]) -> VisibleLayout:
        n = mask.shape[0]
        visible = mask == 0
        counts = visible.sum(dim=1)
        if n == 0 or not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
            raise ValueError('Visible-only encoding needs the same, non-zero number of visible '
                             f'patches in every sample; got counts {counts.tolist()}')
        len_keep = int(counts[0])
        # Stable sort of 0/1 puts the visible patches first, in ascending raster order.
        ids_keep = torch.argsort(mask, dim=1, stable=True)[:, :len_keep]  # (N, K)
        batch_index = torch.arange(n, device=mask.device).unsqueeze(1).expand(n, len_keep)
        return VisibleLayout(batch_index, ids_keep // grid[1], ids_keep % grid[1], grid)

    # Visible tensors are (N, K * p * p, C): kept patches in raster order, then the p x p
    # positions of each patch in raster order (p = patch side at the stage's stride).
    @staticmethod
    def _scatter_dense(x: torch.Tensor, layout: VisibleLayout, p: int) -> torch.Tensor:
        """``(N, K*p*p, C)`` visible -> ``(N, C, h*p, w*p)`` map, zero at masked positions."""
        n, _, c = x.shape
        h, w = layout.grid
        dense = x.new_zeros(n, h, p, w, p, c)
        kept = x.reshape(n, layout.num_kept, p, p, c)  # (N, K*p*p, C) -> (N, K, p, p, C)
        dense[layout.batch_index, layout.rows, :, layout.cols] = kept
        # (N, h, p, w, p, C) -> (N, H, W, C) -> (N, C, H, W) (a channels-last view, no copy)
        return dense.view(n, h * p, w * p, c).permute(0, 3, 1, 2)

    @staticmethod
    def _gather_visible(y: torch.Tensor, layout: VisibleLayout, p: int) -> torch.Tensor:
        """``(N, C, h*p, w*p)`` map -> ``(N, K*p*p, C)`` values at the visible positions."""
        n, c = y.shape[:2]
        h, w = layout.grid
        y = y.permute(0, 2, 3, 1).reshape(n, h, p, w, p, c)  # (N, C, H, W) -> (N, h, p, w, p, C)
        y = y[layout.batch_index, layout.rows, :, layout.cols]  # -> (N, K, p, p, C)
        return y.reshape(n, layout.num_kept * p * p, c)

    @staticmethod
    def _patch_stack(x: torch.Tensor, layout: VisibleLayout, p: int) -> torch.Tensor:
        """``(N, K*p*p, C)`` -> ``(N*K, C, p, p)``: each kept patch as its own small image."""
        c = x.shape[-1]
        return x.view(-1, p, p, c).permute(0, 3, 1, 2)  # (N*K, p, p, C) -> (N*K, C, p, p)

    @staticmethod
    def _unstack_patches(x: torch.Tensor, layout: VisibleLayout) -> torch.Tensor:
        """``(N*K, C, p, p)`` -> ``(N, K*p*p, C)``."""
        n = layout.rows.shape[0]
        c = x.shape[1]
        return x.permute(0, 2, 3, 1).reshape(n, -1, c)  # (N*K, C, p, p) -> (N, K*p*p, C)

    def _block_branch_visible(self, block: ConvNeXtV2Block, x: torch.Tensor,
                              layout: VisibleLayout, p: int) -> torch.Tensor:
        # Masked positions enter the depthwise conv as zeros; only visible outputs are kept.
        x = self._gather_visible(block.dwconv(self._scatter_dense(x, layout, p)), layout, p)
        x = block.act(block.pwconv1(block.norm(x)))  # (N, V, C) -> (N, V, 4C), V = K*p*p
        n, v, hidden = x.shape
        # GRN's spatial axes (1, 2) of (N, V, 1, 4C) are exactly the visible positions of a sample.
        x = block.grn(x.view(n, v, 1, hidden)).view(n, v, hidden)
        x = block.pwconv2(x)
        if block.gamma is not None:
            x = x * block.gamma
        return block.drop_path(x)

    def _encode_visible(self, imgs: torch.Tensor, mask: torch.Tensor,
                        grid: Tuple[int, int]) -> torch.Tensor:
        encoder = self.encoder
        layout = self._visible_layout(mask, grid)
        n, c, big_p = imgs.shape[0], imgs.shape[1], self.patch_size
        # Kept pixel patches: (N, C, h, P, w, P) -> (N, K, C, P, P) -> (N*K, C, P, P)
        patches = imgs.reshape(n, c, grid[0], big_p, grid[1], big_p)
        patches = patches[layout.batch_index, :, layout.rows, :, layout.cols]
        x = patches.reshape(n * layout.num_kept, c, big_p, big_p)
        for i in range(NUM_STAGES):
            p = big_p // STAGE_STRIDES[i]
            if i == 0:
                x = self._unstack_patches(encoder.downsample_layers[0](x), layout)
            else:  # a 2x2 stride-2 window never crosses a patch: run it patch by patch
                x = self._unstack_patches(
                    encoder.downsample_layers[i](self._patch_stack(x, layout, 2 * p)), layout)
            for block in encoder.stages[i]:
                if block.with_cp and x.requires_grad:
                    x = x + cp.checkpoint(self._block_branch_visible, block, x, layout, p,
                                          use_reentrant=False)
                else:
                    x = x + self._block_branch_visible(block, x, layout, p)
        return self._scatter_dense(x, layout, big_p // TOTAL_STRIDE).contiguous()

    @staticmethod
    def _masked_grn(grn: nn.Module, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """GRN of ``(N, H, W, C)`` aggregating over visible positions only (``keep`` = 1)."""
        if not isinstance(grn, GRN):  # no GRN (V1-style encoder)
            return grn(x) * keep
        dtype = x.dtype
        with fp32_region(x):
            x, keep = _upcast(x), _upcast(keep)
            gx = torch.linalg.vector_norm(x * keep, ord=2, dim=(1, 2), keepdim=True)
            nx = gx / (gx.mean(dim=-1, keepdim=True) + grn.eps)
            out = grn.gamma * (x * nx) + grn.beta + x
            return (out * keep).to(dtype)

    def _block_dense_masked(self, block: ConvNeXtV2Block, x: torch.Tensor,
                            keep: torch.Tensor) -> torch.Tensor:
        y = block.dwconv(x) * keep
        y = y.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        keep_last = keep.permute(0, 2, 3, 1)  # (N, 1, H, W) -> (N, H, W, 1)
        y = block.norm(y) * keep_last
        y = block.act(block.pwconv1(y) * keep_last)  # GELU(0) = 0: no re-mask needed
        y = self._masked_grn(block.grn, y, keep_last)
        y = block.pwconv2(y) * keep_last
        if block.gamma is not None:
            y = y * block.gamma
        y = y.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        return x + block.drop_path(y)

    def _encode_dense_masked(self, imgs: torch.Tensor, mask: torch.Tensor,
                             grid: Tuple[int, int]) -> torch.Tensor:
        x = imgs
        for i in range(NUM_STAGES):
            scale = self.patch_size // STAGE_STRIDES[i]
            keep = 1. - self.upsample_mask(mask, scale, grid).unsqueeze(1).to(imgs.dtype)
            x = self.encoder.downsample_layers[i](x) * keep  # (N, C_i, H/s_i, W/s_i)
            for block in self.encoder.stages[i]:
                x = self._block_dense_masked(block, x, keep)
        return x

    # ------------------------------------------------------------------ decoder, loss
    def forward_decoder(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Decode encoder features; masked positions become the mask token.

        Args:
            x (Tensor): ``(N, dims[-1], H/32, W/32)`` encoder output.
            mask (Tensor): ``(N, L)`` patch mask, 1 = masked.

        Returns:
            Tensor: ``(N, 32*32*C, H/32, W/32)`` predicted pixels of each stride-32 cell.
        """
        x = self.proj(x)
        n, _, cell_h, cell_w = x.shape
        scale = self.patch_size // TOTAL_STRIDE
        grid = (cell_h // scale, cell_w // scale)
        mask = self.upsample_mask(mask, scale, grid).unsqueeze(1).to(x.dtype)  # (N, 1, h', w')
        x = x * (1. - mask) + self.mask_token.to(x.dtype) * mask
        x = self.decoder(x)
        return self.pred(x)

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
        """Per-patch pixel MSE averaged over masked patches only (computed in float32).

        Args:
            imgs (Tensor): ``(N, C, H, W)`` normalised images.
            pred (Tensor): :meth:`forward_decoder` output.
            mask (Tensor): ``(N, L)`` patch mask, 1 = masked.

        Returns:
            Tensor: scalar loss.
        """
        target = self.patchify(imgs.float())  # (N, L, P*P*C)
        pred = self._pred_to_patches(pred.float())
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + NORM_PIX_EPS) ** .5
        loss = (pred - target).pow(2).mean(dim=-1)  # (N, L) mean loss per patch
        mask = mask.float()
        return (loss * mask).sum() / mask.sum()

    # ------------------------------------------------------------------ mmengine API
    def forward(self, inputs: torch.Tensor, data_samples: Optional[List[Any]] = None,
                mode: str = 'loss') -> Union[Dict[str, torch.Tensor], List[BaseDataElement],
                                             Tuple[torch.Tensor, torch.Tensor]]:
        """mmengine entry point.

        Args:
            inputs (Tensor): ``(N, C, H, W)`` images from the data preprocessor.
            data_samples (list, optional): Per-image meta, carried into ``predict`` results.
            mode (str): ``'loss'`` -> ``dict(loss=...)``; ``'predict'`` -> one
                :class:`BaseDataElement` per image (see :meth:`reconstruct`); ``'tensor'`` ->
                ``(pred, mask)``. Defaults to ``'loss'``.
        """
        if mode == 'loss':
            latent, mask = self.forward_encoder(inputs)
            pred = self.forward_decoder(latent, mask)
            return dict(loss=self.forward_loss(inputs, pred, mask))
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            latent, mask = self.forward_encoder(inputs)
            return self.forward_decoder(latent, mask), mask
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')

    @torch.no_grad()
    def reconstruct(self, imgs: torch.Tensor, mask: Optional[torch.Tensor] = None
                    ) -> Dict[str, torch.Tensor]:
        """Reconstruct images for visualisation (in the normalised input space).

        With ``norm_pix_loss`` the prediction of each patch is de-normalised with the true
        mean / std of that patch (as MAE's demo does); the loss never sees those statistics.

        Args:
            imgs (Tensor): ``(N, C, H, W)`` normalised images.
            mask (Tensor, optional): ``(N, L)``; random if omitted.

        Returns:
            dict: ``pred`` (N, C, H, W) every patch predicted; ``mask`` (N, L);
            ``mask_pixels`` (N, 1, H, W), 1 = masked; ``pasted`` (N, C, H, W) visible pixels
            from the input, masked ones from the prediction.
        """
        latent, mask = self.forward_encoder(imgs, mask)
        patches = self._pred_to_patches(self.forward_decoder(latent, mask).float())
        if self.norm_pix_loss:
            target = self.patchify(imgs.float())
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + NORM_PIX_EPS) ** .5
            patches = patches * std + mean
        grid = self._grid(imgs)
        pred = self.unpatchify(patches, grid)
        mask_pixels = self.upsample_mask(mask, self.patch_size, grid).unsqueeze(1)
        pasted = imgs.float() * (1 - mask_pixels) + pred * mask_pixels
        return dict(pred=pred, mask=mask, mask_pixels=mask_pixels, pasted=pasted)

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[Any]] = None) -> List[BaseDataElement]:
        """Per-image :class:`BaseDataElement` with ``pred_img``, ``pasted_img`` (C, H, W) and
        ``mask`` (h, w) fields (normalised input space), keeping each sample's meta."""
        out = self.reconstruct(inputs)
        grid = self._grid(inputs)
        results = []
        for index in range(inputs.shape[0]):
            meta = data_samples[index].metainfo if data_samples is not None else {}
            sample = BaseDataElement(metainfo=meta)
            sample.pred_img = out['pred'][index]
            sample.pasted_img = out['pasted'][index]
            sample.mask = out['mask'][index].reshape(grid)
            results.append(sample)
        return results


# ---------------------------------------------------------------------- export
def fcmae_to_backbone_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The encoder weights of an FCMAE state dict as :class:`ConvNeXtV2` keys.

    Keeps the ``encoder.*`` entries with the prefix stripped (``module.encoder.*`` from an
    unwrapped DDP model too) and drops the decoder (``proj``, ``mask_token``, ``decoder``,
    ``pred``). Idempotent: a state dict that already has backbone keys is returned as is.

    Args:
        state_dict (dict[str, Tensor]): FCMAE weights.

    Returns:
        dict[str, Tensor]: ``downsample_layers.*`` / ``stages.*`` weights.
    """
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in state_dict.items()}
    if any(k.startswith(ENCODER_PREFIX) for k in state):
        return {k[len(ENCODER_PREFIX):]: v for k, v in state.items()
                if k.startswith(ENCODER_PREFIX)}
    if any(k.startswith(('downsample_layers.', 'stages.')) for k in state):
        return {k: v for k, v in state.items() if not k.startswith(DECODER_PREFIXES)}
    raise ValueError('No FCMAE encoder weights (keys starting with "encoder.") found; first '
                     f'keys: {sorted(state)[:5]}')


def infer_arch(backbone_state: Dict[str, torch.Tensor]) -> Dict[str, List[int]]:
    """``dict(depths, dims)`` of a ConvNeXtV2 state dict, read off its keys and shapes."""
    depths = [1 + max((int(k.split('.')[2]) for k in backbone_state
                       if k.startswith(f'stages.{i}.')), default=-1) for i in range(NUM_STAGES)]
    dims = [int(backbone_state[f'stages.{i}.0.dwconv.weight'].shape[0])
            if depths[i] else 0 for i in range(NUM_STAGES)]
    return dict(depths=depths, dims=dims)


def export_fcmae_backbone(checkpoint: Union[str, Path], out_file: Union[str, Path],
                          meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write the encoder of an FCMAE checkpoint as a backbone checkpoint.

    The result ``{'state_dict': <ConvNeXtV2 keys>, 'meta': {...}}`` loads with
    ``ConvNeXtV2(init_cfg=dict(type='Pretrained', checkpoint=out_file))`` and in the detection /
    segmentation configs; only the output norms ``norm{i}`` are missing (FCMAE has none).

    Args:
        checkpoint (str | Path): An mmengine checkpoint of :class:`FCMAE` (or its state dict).
        out_file (str | Path): Where to write the backbone checkpoint.
        meta (dict, optional): Extra meta entries (plain Python values).

    Returns:
        dict: The object written.
    """
    from ..checkpoint import extract_state_dict, read_checkpoint
    from ..utils import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()  # mmengine training checkpoints carry the message hub
    raw = read_checkpoint(checkpoint)
    state = fcmae_to_backbone_state_dict(extract_state_dict(raw))
    source_meta = raw.get('meta', {}) if isinstance(raw, dict) else {}
    info: Dict[str, Any] = dict(
        pretrain='FCMAE', model='cnxv2_dense.ConvNeXtV2', arch=infer_arch(state),
        source_checkpoint=str(checkpoint), exported=time.strftime('%Y-%m-%d %H:%M:%S'))
    for key in ('epoch', 'iter', 'mmengine_version', 'experiment_name'):
        if isinstance(source_meta, dict) and key in source_meta:
            info[key] = source_meta[key]
    info.update(meta or {})
    result = dict(state_dict={k: v.detach().cpu().clone() for k, v in state.items()}, meta=info)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result, out_file)
    return result


__all__ = ['FCMAE', 'VisibleLayout', 'fcmae_to_backbone_state_dict', 'export_fcmae_backbone',
           'infer_arch', 'IMAGENET_MEAN', 'IMAGENET_STD']
