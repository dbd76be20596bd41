from .feature_collapse import block_activation_distances, pairwise_cosine_distance
from .linear_probe import LinearProbe, ProbeResult, class_iou, confusion_matrix, dense_features

__all__ = ['block_activation_distances', 'pairwise_cosine_distance', 'LinearProbe',
           'ProbeResult', 'class_iou', 'confusion_matrix', 'dense_features']
