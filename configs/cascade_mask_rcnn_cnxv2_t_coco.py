# Cascade Mask R-CNN, ConvNeXt V2-T (FCMAE IN-1K pretrain-only weights), FPN 4conv1fc GIoU
# heads, multi-scale + crop, 3x, COCO 2017.
# Recipe: the ConvNeXt V2 paper reports no Cascade Mask R-CNN result, so this keeps the ConvNeXt
# V1 Cascade T recipe (V1 repository, cascade_mask_rcnn_convnext_tiny_..._3x_coco_in1k.py): AdamW
# lr 2e-4, wd 0.05, layer-wise decay 0.7 with num_layers 6, drop path 0.4, 16 images per
# iteration, lr steps at 27 / 33, 500 warmup iterations, AMP, standard NMS. Only the
# initialisation follows the V2 paper's COCO setting (Appendix A.3): FCMAE pretrain-only weights.
# Reference: V1-T (IN-1K supervised) 50.4 box AP / 43.7 mask AP (ConvNeXt paper, Table 3); no V2
# number is published. Not yet reproduced by this project.
_base_ = ['./_base_/cascade_mask_rcnn_cnxv2_fpn_ms_3x_coco.py']

optim_wrapper = dict(optimizer=dict(lr=2e-4),
                     paramwise_cfg=dict(decay_rate=0.7, num_layers=6))
