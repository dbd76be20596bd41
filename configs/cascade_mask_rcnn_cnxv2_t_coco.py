# Cascade Mask R-CNN, ConvNeXt V2-T (FCMAE IN-1K pretrained), FPN 4conv1fc GIoU heads,
# multi-scale + crop, 3x, COCO 2017.
# Recipe: ConvNeXt Cascade T (AdamW lr 2e-4, wd 0.05, layer-wise decay 0.7, num_layers 6,
# drop path 0.4, AMP, 16 images per iteration).
# Reported reference: V1-T (IN-1K supervised) 50.4 box AP / 43.7 mask AP (ConvNeXt paper,
# Table 3); no V2-T COCO number is published. Not yet reproduced by this project.
_base_ = ['./_base_/cascade_mask_rcnn_cnxv2_fpn_ms_3x_coco.py']

optim_wrapper = dict(optimizer=dict(lr=2e-4),
                     paramwise_cfg=dict(decay_rate=0.7, num_layers=6))
