# Cascade Mask R-CNN, ConvNeXt V2-L (FCMAE IN-1K pretrain-only weights), FPN 4conv1fc GIoU
# heads, multi-scale + crop, 3x, COCO 2017.
# Recipe: the ConvNeXt V2 paper reports no Cascade Mask R-CNN result, so this keeps the ConvNeXt
# V1 Cascade L recipe (V1 repository, cascade_mask_rcnn_convnext_large_..._3x_coco_in22k.py, the
# only published L setting): AdamW lr 1e-4, wd 0.05, layer-wise decay 0.7 with num_layers 12,
# drop path 0.7, 16 images per iteration, lr steps at 27 / 33, 500 warmup iterations, standard
# NMS. V1 trained L in fp32; AMP is kept (LayerNorm and GRN compute in fp32 in this backbone, see
# configs/_base_/cnxv2_coco_ms_3x.py). Initialisation follows the V2 paper's COCO setting
# (Appendix A.3): FCMAE pretrain-only weights (V1-L used IN-22K supervised weights).
# Reference: V1-L IN-22K supervised 54.8 box AP / 47.6 mask AP (ConvNeXt V1 repository,
# object_detection/README); no V2 number is published. Not yet reproduced by this project.
_base_ = ['./_base_/cascade_mask_rcnn_cnxv2_fpn_ms_3x_coco.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_large_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.7,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(optimizer=dict(lr=1e-4),
                     paramwise_cfg=dict(decay_rate=0.7, num_layers=12))
