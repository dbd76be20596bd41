# Cascade Mask R-CNN, ConvNeXt V2-B (FCMAE IN-1K pretrain-only weights), FPN 4conv1fc GIoU
# heads, multi-scale + crop, 3x, COCO 2017.
# Recipe: the ConvNeXt V2 paper reports no Cascade Mask R-CNN result, so this keeps the ConvNeXt
# V1 Cascade B IN-1K recipe (V1 repository, cascade_mask_rcnn_convnext_base_..._3x_coco_in1k.py):
# AdamW lr 2e-4, wd 0.05, layer-wise decay 0.8 with num_layers 12, drop path 0.7, 16 images per
# iteration, lr steps at 27 / 33, 500 warmup iterations, AMP, standard NMS. Only the
# initialisation follows the V2 paper's COCO setting (Appendix A.3): FCMAE pretrain-only weights.
# Reference: V1-B IN-1K supervised 52.7 box AP / 45.6 mask AP with this recipe (ConvNeXt V1
# repository, object_detection/README); no V2 number is published. Not yet reproduced here.
_base_ = ['./_base_/cascade_mask_rcnn_cnxv2_fpn_ms_3x_coco.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_base_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.7,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(optimizer=dict(lr=2e-4),
                     paramwise_cfg=dict(decay_rate=0.8, num_layers=12))
