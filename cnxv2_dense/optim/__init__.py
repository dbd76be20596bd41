"""Optimizer-wrapper constructors of the ``cnxv2_dense`` scope."""
from .layer_decay_constructor import (LayerDecayOptimWrapperConstructor, lr_decay_scale,
                                      weight_decay_kind)

__all__ = ['LayerDecayOptimWrapperConstructor', 'lr_decay_scale', 'weight_decay_kind']
