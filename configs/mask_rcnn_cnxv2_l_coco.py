# Mask R-CNN, ConvNeXt V2-L (FCMAE IN-1K pretrained), FPN, LSJ 1024, 3x, COCO 2017.
# Recipe: the V2-B recipe (mask_rcnn_cnxv2_b_coco.py) scaled to L: drop path raised to 0.5 and
# layer-wise decay lowered to 0.9 for the wider model (our choice, following the trend of the
# ConvNeXt Cascade recipes, where L uses a lower decay and higher drop path than B).
# Reported reference: none published for Mask R-CNN V2-L. Not yet reproduced.
_base_ = ['./_base_/mask_rcnn_cnxv2_fpn_lsj_3x_coco.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_large_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.5,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9, num_layers=12))
