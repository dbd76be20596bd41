# DINO-4scale, ConvNeXt V2-T (FCMAE IN-1K pretrain-only weights), 12 epochs, COCO 2017 detection.
# Recipe: mmdet's DINO-4scale recipe, mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py, kept whole:
# 900 queries, two-stage with box refinement and denoising queries, 6 + 6 deformable-attention
# layers on 4 levels (strides 8, 16, 32 from the backbone and one extra 3x3 stride-2 level),
# DETR multi-scale + crop augmentation, 16 images per iteration, AdamW lr 1e-4, wd 1e-4,
# gradient clipping at 0.1, lr x0.1 at epoch 11, backbone at 0.1 of the lr. mmdet has no Swin-T /
# Swin-B DINO config; this 4-scale R-50 recipe is also the one mmdetection's projects/ConvNeXt-V2
# pairs with ConvNeXt V2 (its V2-atto DINO config).
# Changed for ConvNeXt V2 (only the backbone block and the optimiser constructor):
# - backbone cnxv2_dense.ConvNeXtV2-T, stages 1-3 out (strides 8-32, as R-50's out_indices
#   1-3), drop path 0.4, this project's V2-T COCO value (configs/mask_rcnn_cnxv2_t_coco.py);
# - weights: the FCMAE pretrain-only weights, as the V2 paper initialises its COCO models
#   (Appendix A.3);
# - layer decay: layer_wise 0.95 with num_layers 6 (the project's V2-T COCO values), times the
#   base's backbone x0.1 (custom_keys_mode='multiply', so the backbone's LayerNorms, GRN and
#   biases get no weight decay; docs/layer_decay.md). Untuned for this head.
# Closest published number (mmdet's metafile, mmdet/.mim/configs/dino/metafile.yml):
# DINO-4scale R-50, this recipe, 49.0 box AP. No ConvNeXt V2 + DINO result is published.
# Not trained by this project.
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py']
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

# Official FCMAE pretrain-only weights (CC-BY-NC 4.0); any format docs/checkpoints.md lists works
# here, e.g. --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/my_fcmae/backbone.pth
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_tiny_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,  # replace mmdet's ResNet-50 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='tiny',
        out_indices=(1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768]))

# The base's AdamW, gradient clipping and paramwise_cfg (custom_keys 'backbone' lr_mult 0.1) are
# inherited and honoured; this adds the layer decay: a backbone parameter with layer id i trains
# at 0.1 * 0.95 ** (num_layers + 1 - i) of the head's lr.
optim_wrapper = dict(
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6,
                       custom_keys_mode='multiply'))
