"""Where the visible patches of an FCMAE batch lie, and moves between maps and visible tokens.

The visible-only FCMAE encoder keeps, at every stage, the values of the visible positions as an
``(N, K * p * p, C)`` token tensor: the ``K`` kept patches of each sample in ascending raster
order, then the ``p x p`` positions of each patch in raster order (``p`` = the patch side at the
stage's stride). :class:`VisibleLayout` converts between that and full maps.
"""
from typing import NamedTuple, Tuple

import torch


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

    @classmethod
    def from_mask(cls, mask: torch.Tensor, grid: Tuple[int, int]) -> 'VisibleLayout':
        """The layout of an ``(N, L)`` patch mask (1 = masked) over an ``(h, w)`` grid.

        Raises:
            ValueError: The samples do not all keep the same, non-zero number of patches.
        """
        n = mask.shape[0]
        counts = (mask == 0).sum(dim=1)
        if n == 0 or not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
            raise ValueError('Visible-only encoding needs the same, non-zero number of visible '
                             f'patches in every sample; got counts {counts.tolist()}')
        len_keep = int(counts[0])
        # Stable sort of 0/1 puts the visible patches first, in ascending raster order.
        ids_keep = torch.argsort(mask, dim=1, stable=True)[:, :len_keep]  # (N, K)
        batch_index = torch.arange(n, device=mask.device).unsqueeze(1).expand(n, len_keep)
        return cls(batch_index, ids_keep // grid[1], ids_keep % grid[1], grid)

    def kept_patches(self, imgs: torch.Tensor, p: int) -> torch.Tensor:
        """``(N, C, h*p, w*p)`` images -> ``(N*K, C, p, p)``: each kept patch as a small image."""
        n, c = imgs.shape[:2]
        h, w = self.grid
        patches = imgs.reshape(n, c, h, p, w, p)
        patches = patches[self.batch_index, :, self.rows, :, self.cols]  # -> (N, K, C, p, p)
        return patches.reshape(n * self.num_kept, c, p, p)

    def scatter(self, x: torch.Tensor, p: int) -> torch.Tensor:
        """``(N, K*p*p, C)`` tokens -> ``(N, C, h*p, w*p)`` map, zero at masked positions."""
        n, _, c = x.shape
        h, w = self.grid
        dense = x.new_zeros(n, h, p, w, p, c)
        kept = x.reshape(n, self.num_kept, p, p, c)  # (N, K*p*p, C) -> (N, K, p, p, C)
        dense[self.batch_index, self.rows, :, self.cols] = kept
        # (N, h, p, w, p, C) -> (N, H, W, C) -> (N, C, H, W) (a channels-last view, no copy)
        return dense.view(n, h * p, w * p, c).permute(0, 3, 1, 2)

    def gather(self, y: torch.Tensor, p: int) -> torch.Tensor:
        """``(N, C, h*p, w*p)`` map -> ``(N, K*p*p, C)`` values at the visible positions."""
        n, c = y.shape[:2]
        h, w = self.grid
        y = y.permute(0, 2, 3, 1).reshape(n, h, p, w, p, c)  # (N, C, H, W) -> (N, h, p, w, p, C)
        y = y[self.batch_index, self.rows, :, self.cols]  # -> (N, K, p, p, C)
        return y.reshape(n, self.num_kept * p * p, c)

    @staticmethod
    def to_patch_stack(x: torch.Tensor, p: int) -> torch.Tensor:
        """``(N, K*p*p, C)`` -> ``(N*K, C, p, p)``: each kept patch as its own small image."""
        c = x.shape[-1]
        return x.view(-1, p, p, c).permute(0, 3, 1, 2)  # (N*K, p, p, C) -> (N*K, C, p, p)

    def from_patch_stack(self, x: torch.Tensor) -> torch.Tensor:
        """``(N*K, C, p, p)`` -> ``(N, K*p*p, C)``."""
        n, c = self.rows.shape[0], x.shape[1]
        return x.permute(0, 2, 3, 1).reshape(n, -1, c)  # (N*K, C, p, p) -> (N, K*p*p, C)
