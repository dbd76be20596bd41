from .backbones import backbone_from_checkpoint, random_backbone
from .feature_collapse import block_activation_distances, pairwise_cosine_distance
from .linear_probe import LinearProbe, ProbeResult, class_iou, confusion_matrix, dense_features

__all__ = ['LinearProbe', 'ProbeResult', 'backbone_from_checkpoint', 'block_activation_distances',
           'class_iou', 'confusion_matrix', 'dense_features', 'pairwise_cosine_distance',
           'random_backbone']
