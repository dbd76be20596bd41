"""GRN written for the exported graph: the same values, a reduction ONNX Runtime runs faster.

In the model, GRN's ``G(x)`` is ``torch.linalg.vector_norm`` over the two spatial axes of an
``(N, H, W, C)`` tensor, which exports as one ``ReduceL2`` over axes 1 and 2: 13.8% of ONNX
Runtime's time on the V2-T backbone at batch 8 (``benchmarks/onnxruntime_profile.py``), more than
the BiasGelu pass over the same tensor. Here ``G(x)`` is ``sqrt(sum over H*W of x * x)`` on the
tensor viewed as ``(N, H*W, C)``: Mul, Reshape, ReduceSum over one axis, Sqrt, which together
take about 4.5% of the time in the same profile (docs/speed.md). The math is float32 whatever the
input dtype, as in :class:`~cnxv2_dense.models.layers.GRN` (float16 exports stay finite), and
the module is a GRN, so the float16 export keeps its parameters in float32 too.
"""
import torch
from torch import nn

from ..models import layers
from ..models.layers import GRN


class GRNForExport(GRN):
    """Inference-only GRN for channels-last ``(N, H, W, C)`` inputs (the blocks' layout)."""

    @classmethod
    def from_grn(cls, grn: GRN) -> 'GRNForExport':
        if not grn.channels_last:
            raise ValueError('GRNForExport takes the blocks\' channels-last GRN only')
        new = cls(grn.num_channels, eps=grn.eps, channels_last=True, fused=False)
        new.gamma, new.beta = grn.gamma, grn.beta
        return new

    def forward(self, x: torch.Tensor, visible=None) -> torch.Tensor:
        if visible is not None:
            raise ValueError('GRNForExport has no masked form (FCMAE pretraining uses GRN)')
        x32 = layers._upcast(x)  # the model's GRN upcast (a test swaps it for the naive graph)
        # (N, H*W, C) with H*W as -1: a static export's constants then fix only N and C.
        flat = (x32 * x32).reshape(x32.shape[0], -1, x32.shape[-1])
        gx = flat.sum(dim=1, keepdim=True).sqrt().unsqueeze(1)  # (N, 1, 1, C)
        # From G(x) on, the model's own GRN math (float32 parameters, precision.py).
        _, _, scale = layers._grn_scale(gx, self.gamma, self.eps, self.channel_dim)
        out = torch.addcmul(layers._param_view(self.beta, x.dim(), self.channel_dim), x32, scale)
        return out.to(x.dtype)


def use_export_grn(model: nn.Module) -> nn.Module:
    """Replace (in place) every channels-last GRN of ``model`` by a :class:`GRNForExport`
    sharing its parameters; others get the plain-ops path (``fused = False``)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is GRN:
                if child.channels_last:
                    setattr(parent, name, GRNForExport.from_grn(child))
                else:
                    child.fused = False
    return model
