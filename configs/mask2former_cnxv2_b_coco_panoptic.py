# Mask2Former (panoptic), ConvNeXt V2-B (FCMAE IN-1K pretrain-only weights), LSJ 1024, 50 epochs,
# COCO panoptic 2017: mask2former_cnxv2_t_coco_panoptic.py (mmdet's Mask2Former LSJ 50-epoch
# panoptic recipe, whole) with the V2-B backbone.
# Changed for ConvNeXt V2 (only the backbone block and the optimiser constructor):
# - backbone cnxv2_dense.ConvNeXtV2-B with drop path 0.4, this project's V2-B COCO value
#   (configs/mask_rcnn_cnxv2_b_coco.py, from mmdetection's projects/ConvNeXt-V2 V2-B config);
# - weights: the FCMAE pretrain-only weights, as the V2 paper initialises its COCO models
#   (Appendix A.3);
# - layer decay: layer_wise 0.95 with num_layers 12 (depth-27 third stage), times the base's
#   backbone x0.1 (custom_keys_mode='multiply'; docs/layer_decay.md).
# Closest published numbers (mmdet's metafile, mmdet/.mim/configs/mask2former/metafile.yml):
# Mask2Former Swin-B (IN-1K, 384 px), this recipe, 55.1 PQ (48.2 box AP, 44.9 mask AP); Swin-B
# (IN-21K) 56.3 PQ. No ConvNeXt V2 + Mask2Former result is published. Not trained by this
# project.
_base_ = ['./mask2former_cnxv2_t_coco_panoptic.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_base_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    panoptic_head=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))  # depth-27 third stage
