"""Which models the exporter supports, told apart from a config before anything is built.

Supported (and tested against PyTorch through ONNX Runtime):
- ``backbone``: the backbone of any config (``tools/export.py ... --backbone-only``);
- ``segmentor``: mmseg ``EncoderDecoder`` with a ``UPerHead`` decode head (UperNet);
- ``detector``: mmdet ``MaskRCNN`` and ``CascadeRCNN`` with a mask head (Cascade Mask R-CNN).
Anything else is refused by name, with the reason where one is known.
"""
from typing import Dict

from mmengine.config import Config

SUPPORTED: Dict[str, str] = {
    'MaskRCNN': 'detector',
    'CascadeRCNN': 'detector',
    'EncoderDecoder': 'segmentor',
}
SEGMENTOR_DECODE_HEADS = ('UPerHead',)

# Known model types that cannot be exported yet, and why.
REFUSED_BECAUSE: Dict[str, str] = {
    'Mask2Former': 'its pixel decoder and transformer decoder use multi-scale deformable '
                   'attention (mmcv MultiScaleDeformableAttention), which has no standard ONNX '
                   'op; a GridSample decomposition is possible but not written or tested here',
    'DINO': 'its encoder and decoder use multi-scale deformable attention (mmcv '
            'MultiScaleDeformableAttention), which has no standard ONNX op; a GridSample '
            'decomposition is possible but not written or tested here',
    'MaskFormer': 'query-based post-processing is not written for ONNX here',
}
# mmseg's Mask2Former is an EncoderDecoder whose decode head is the query-based one.
REFUSED_BECAUSE['Mask2FormerHead'] = REFUSED_BECAUSE['Mask2Former']


class UnsupportedModelError(ValueError):
    """The config's model is not one the exporter supports."""


def supported_list() -> str:
    return ('Mask R-CNN (mmdet MaskRCNN), Cascade Mask R-CNN (mmdet CascadeRCNN with a mask '
            'head), UperNet (mmseg EncoderDecoder with UPerHead), and the backbone alone of any '
            'config (--backbone-only)')


def model_family(cfg: Config) -> str:
    """``'detector'`` or ``'segmentor'`` for a config the exporter supports.

    Raises:
        UnsupportedModelError: Naming the config's model type, the reason when known, the
            supported families and ``--backbone-only`` as the way to export its backbone.
    """
    model_type = str(cfg.model.get('type', '?')).split('.')[-1]
    family = SUPPORTED.get(model_type)
    reason = REFUSED_BECAUSE.get(model_type)
    if family == 'segmentor':
        head = str(cfg.model.get('decode_head', {}).get('type', '?')).split('.')[-1]
        if head not in SEGMENTOR_DECODE_HEADS:
            family, model_type = None, f'EncoderDecoder with a {head} decode head'
            reason = REFUSED_BECAUSE.get(head)
    if family == 'detector' and model_type == 'CascadeRCNN' and \
            cfg.model.get('roi_head', {}).get('mask_head') is None:
        family, model_type = None, 'CascadeRCNN without a mask head'
    if family is not None:
        return family
    because = f' ({reason})' if reason else ''
    raise UnsupportedModelError(
        f'{cfg.filename}: the exporter does not support {model_type}{because}. Supported: '
        f'{supported_list()}. To deploy this model\'s backbone alone, add --backbone-only.')
