# Cascade Mask R-CNN, ConvNeXt V2-L (FCMAE IN-1K pretrained), FPN 4conv1fc GIoU heads,
# multi-scale + crop, 3x, COCO 2017.
# Recipe: ConvNeXt Cascade L (AdamW lr 1e-4, layer-wise decay 0.7, num_layers 12,
# drop path 0.7), the published large-model setting.
# Reported reference: none for V2-L. Not yet reproduced by this project.
_base_ = ['./_base_/cascade_mask_rcnn_cnxv2_fpn_ms_3x_coco.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_large_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.7,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(optimizer=dict(lr=1e-4),
                     paramwise_cfg=dict(decay_rate=0.7, num_layers=12))
