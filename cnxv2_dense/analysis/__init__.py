from .feature_collapse import block_activation_distances, pairwise_cosine_distance

__all__ = ['block_activation_distances', 'pairwise_cosine_distance']
