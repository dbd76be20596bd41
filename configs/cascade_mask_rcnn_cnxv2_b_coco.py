# Cascade Mask R-CNN, ConvNeXt V2-B (FCMAE IN-1K pretrained), FPN 4conv1fc GIoU heads,
# multi-scale + crop, 3x, COCO 2017.
# Recipe: ConvNeXt Cascade B with IN-1K pretraining (AdamW lr 2e-4, layer-wise decay 0.8,
# num_layers 12, drop path 0.7).
# Reported reference: none for V2-B; V1-B 22K-pretrained reaches 54.0 / 46.9 (ConvNeXt paper)
# with the 22K recipe. Not yet reproduced by this project.
_base_ = ['./_base_/cascade_mask_rcnn_cnxv2_fpn_ms_3x_coco.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_base_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(optimizer=dict(lr=2e-4),
                     paramwise_cfg=dict(decay_rate=0.8, num_layers=12))
