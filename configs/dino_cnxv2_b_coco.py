# DINO-4scale, ConvNeXt V2-B (FCMAE IN-1K pretrain-only weights), 12 epochs, COCO 2017 detection:
# dino_cnxv2_t_coco.py (mmdet's DINO-4scale 12-epoch recipe, whole) with the V2-B backbone.
# Changed for ConvNeXt V2 (only the backbone block and the optimiser constructor):
# - backbone cnxv2_dense.ConvNeXtV2-B, stages 1-3 out, drop path 0.4, this project's V2-B COCO
#   value (configs/mask_rcnn_cnxv2_b_coco.py, from mmdetection's projects/ConvNeXt-V2 V2-B);
# - weights: the FCMAE pretrain-only weights (V2 paper, Appendix A.3);
# - layer decay: layer_wise 0.95 with num_layers 12 (depth-27 third stage), times the base's
#   backbone x0.1 (custom_keys_mode='multiply'; docs/layer_decay.md).
# Closest published number (mmdet's metafile, mmdet/.mim/configs/dino/metafile.yml):
# DINO-4scale R-50, this recipe, 49.0 box AP (mmdet has no Swin-B DINO). No ConvNeXt V2 + DINO
# result is published. Not trained by this project.
_base_ = ['./dino_cnxv2_t_coco.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_base_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))  # depth-27 third stage
