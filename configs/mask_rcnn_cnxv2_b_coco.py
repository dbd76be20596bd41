# Mask R-CNN, ConvNeXt V2-B (FCMAE IN-1K pretrained), FPN, LSJ 1024, 3x, COCO 2017.
# Recipe: mmdetection's ConvNeXt V2-B FCMAE Mask R-CNN (AdamW lr 1e-4, wd 0.05, layer-wise
# decay 0.95 with num_layers 12, drop path 0.4, 32 images per iteration).
# Reported reference: 52.9 box AP / 46.4 mask AP (mmdetection projects/ConvNeXt-V2, whose head
# details may differ from mmdet's standard Mask R-CNN heads used here). Not yet reproduced.
_base_ = ['./_base_/mask_rcnn_cnxv2_fpn_lsj_3x_coco.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_base_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.95, num_layers=12))
