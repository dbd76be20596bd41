"""FCMAE: fully convolutional masked-autoencoder pretraining of ConvNeXt V2, in pure PyTorch.

Paper: "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
Woo et al., CVPR 2023 (arXiv 2301.00808), Sec. 3. Official code (JAX for the paper's results;
a PyTorch port on MinkowskiEngine sparse convolutions) and weights:
https://github.com/facebookresearch/ConvNeXt-V2 (weights CC-BY-NC 4.0).

The encoder is this project's :class:`ConvNeXtV2`, held as ``self.encoder`` with unchanged
parameter names, so ``encoder.*`` weights load into the detection / segmentation backbone by
stripping the prefix (:func:`cnxv2_dense.checkpoints.export_fcmae_backbone`). The decoder follows
the official one: ``proj`` (1x1 conv to ``decoder_dim``), a learnable ``mask_token``, ``decoder``
(ConvNeXt V2 blocks) and ``pred`` (1x1 conv to the 32x32x3 pixels of each stride-32 cell). The
loss is the per-patch MSE against patch-normalised pixels (``norm_pix_loss``, on by default as in
the official ``main_pretrain.py``), over masked patches only.

Masked positions never influence visible ones: every depthwise conv reads them as zeros and GRN
leaves them out of its statistic. The blocks own both masked forms (``ConvNeXtV2Block.forward``
with a ``visible`` mask, ``ConvNeXtV2Block.forward_visible``); this module only arranges the
layout, in one of two implementations of the same function:

* ``'visible'`` (default): every sample keeps the same number ``K`` of patches, so each stage's
  visible positions are kept as ``(N, K * p * p, C)`` tokens (:class:`VisibleLayout`). The
  pointwise layers and GRN run on the tokens only; the 7x7 depthwise conv runs on a zero-filled
  map and only its visible outputs are kept. Because the mask grid (32 px) is a multiple of
  every stride, the stem and each 2x2 downsample act on each kept patch alone, so they run on
  the ``(N * K, C, p, p)`` stack of kept patches.
* ``'dense_masked'``: the straightforward form. Every op runs on the full map with the mask.
  About 2.5x the pointwise work at mask ratio 0.6; kept for tests and
  ``benchmarks/fcmae_speed.py``.

GRN statistics. Here GRN's L2 norm is taken per image over its visible positions. That is what
the official JAX masked-convolution model printed in the official TRAINING.md computes, and the
paper's results were trained with that JAX code. The official PyTorch release differs: its
``MinkowskiGRN`` takes one norm per channel over all visible positions of the whole batch
(official issue #86 / PR #85), so its statistics mix images and depend on the batch size. This
module is therefore not equivalent to the official PyTorch pretraining code on that point; it
matches the JAX model, and the fine-tuned network, whose GRN is per image.
"""
import copy
import functools
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from mmengine.model import BaseModel
from mmengine.model.weight_init import trunc_normal_
from mmengine.structures import BaseDataElement
from torch import nn

from ..arch import NUM_STAGES, STAGE_STRIDES, TOTAL_STRIDE
from ..registry import MODELS
from .convnextv2 import ConvNeXtV2, ConvNeXtV2Block
from .visible_layout import VisibleLayout

# ImageNet mean / std in RGB order, on the 0-255 scale (the official FCMAE normalisation).
IMAGENET_MEAN: Tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD: Tuple[float, float, float] = (58.395, 57.12, 57.375)
ENCODER_IMPLS: Tuple[str, ...] = ('visible', 'dense_masked')
NORM_PIX_EPS = 1e-6


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
        norm_pix_loss (bool): Normalise each target patch by its own mean / std (the paper's
            target; the official ``main_pretrain.py`` turns it on). Defaults to True.
        drop_path_rate (float): Stochastic depth of the encoder. Defaults to 0.
        layer_scale_init_value (float): Encoder layer scale (0 disables it, as in V2).
            Defaults to 0.
        with_cp (bool): Gradient checkpointing of the encoder blocks. Defaults to False.
        use_grn (bool): GRN in the encoder blocks. ``False`` with a layer scale
            (``layer_scale_init_value=1e-6``) gives the paper's "FCMAE without GRN" encoder,
            ConvNeXt V1's block. The decoder block keeps GRN either way. Defaults to True.
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
                 norm_pix_loss: bool = True,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 0.,
                 with_cp: bool = False,
                 use_grn: bool = True,
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
                                  layer_scale_init_value=layer_scale_init_value, with_cp=with_cp,
                                  use_grn=use_grn)
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
        """Initialise: encoder as the backbone, decoder trunc-normal(.02), mask token N(0, .02).

        The encoder gets the backbone's init (trunc normal std .02 on every conv / linear, zero
        biases: the official *fine-tuning* init). The decoder's convs and linears get the same,
        and the mask token N(0, .02) as in the official code.

        NOTE: this is not the official ``FCMAE._init_weights``. That one applies timm's
        ``trunc_normal_`` with std .02 to the sparse stem / downsample convs only, and with
        timm's default std (1.0, cut at +-2) to the depthwise kernels, the pointwise linears
        and every dense ``nn.Conv2d`` (decoder ``proj``, ``pred`` and the decoder block's
        depthwise conv); the decoder block's ``nn.Linear`` layers keep PyTorch's default. We
        use one rule instead, the backbone's, so the encoder starts the same whether it is
        pretrained here or trained from scratch downstream, and the decoder follows the same
        rule rather than a mix of std 1 and PyTorch defaults. A ``Pretrained`` ``init_cfg``
        (an FCMAE checkpoint) is loaded by mmengine afterwards.
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

    def _encode_visible(self, imgs: torch.Tensor, mask: torch.Tensor,
                        grid: Tuple[int, int]) -> torch.Tensor:
        encoder = self.encoder
        layout = VisibleLayout.from_mask(mask, grid)
        x = layout.kept_patches(imgs, self.patch_size)  # (N*K, C, P, P)
        for i in range(NUM_STAGES):
            p = self.patch_size // STAGE_STRIDES[i]
            if i == 0:
                x = layout.from_patch_stack(encoder.downsample_layers[0](x))
            else:  # a 2x2 stride-2 window never crosses a patch: run it patch by patch
                x = layout.from_patch_stack(
                    encoder.downsample_layers[i](layout.to_patch_stack(x, 2 * p)))
            # x: (N, K*p*p, C_i), the visible positions of stage i
            to_map = functools.partial(layout.scatter, p=p)
            to_tokens = functools.partial(layout.gather, p=p)
            for block in encoder.stages[i]:
                x = block.forward_visible(x, to_map, to_tokens)
        return layout.scatter(x, self.patch_size // TOTAL_STRIDE).contiguous()

    def _encode_dense_masked(self, imgs: torch.Tensor, mask: torch.Tensor,
                             grid: Tuple[int, int]) -> torch.Tensor:
        x = imgs
        for i in range(NUM_STAGES):
            scale = self.patch_size // STAGE_STRIDES[i]
            visible = 1. - self.upsample_mask(mask, scale, grid).unsqueeze(1).to(imgs.dtype)
            x = self.encoder.downsample_layers[i](x) * visible  # (N, C_i, H/s_i, W/s_i)
            for block in self.encoder.stages[i]:
                x = block(x, visible)
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


__all__ = ['FCMAE', 'VisibleLayout', 'IMAGENET_MEAN', 'IMAGENET_STD', 'ENCODER_IMPLS']
