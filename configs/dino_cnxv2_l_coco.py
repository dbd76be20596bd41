# DINO-5scale, ConvNeXt V2-L (FCMAE IN-1K pretrain-only weights), 12 epochs, COCO 2017 detection.
# Recipe: mmdet's DINO Swin-L recipe, mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py, kept
# whole: the DINO-4scale recipe (dino_cnxv2_t_coco.py) on 5 levels (strides 4-32 from the
# backbone and one extra stride-64 level), gradient checkpointing in the backbone.
# Changed for ConvNeXt V2 (only the backbone block and the optimiser constructor):
# - backbone cnxv2_dense.ConvNeXtV2-L (the same widths as Swin-L, 192-1536), all 4 stages out,
#   gradient checkpointing as the Swin-L config, drop path 0.5, this project's V2-L COCO value
#   (configs/mask_rcnn_cnxv2_l_coco.py; the Swin-L config uses 0.2);
# - weights: the FCMAE pretrain-only weights, as the V2 paper initialises its COCO models
#   (Appendix A.3; the Swin-L config starts from IN-22K supervised weights);
# - layer decay: layer_wise 0.9 with num_layers 12 (the project's V2-L COCO values), times the
#   base's backbone x0.1 (custom_keys_mode='multiply'; docs/layer_decay.md).
# Closest published number (mmdet's metafile, mmdet/.mim/configs/dino/metafile.yml):
# DINO-5scale Swin-L (IN-22K), this recipe, 57.2 box AP. No ConvNeXt V2 + DINO result is
# published. Not trained by this project.
_base_ = ['mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py']
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_large_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,  # replace mmdet's Swin-L entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='large',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.5,
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))

optim_wrapper = dict(
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise', num_layers=12,
                       custom_keys_mode='multiply'))
