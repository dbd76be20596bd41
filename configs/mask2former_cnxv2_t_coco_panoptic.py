# Mask2Former (panoptic), ConvNeXt V2-T (FCMAE IN-1K pretrain-only weights), LSJ 1024, 50 epochs,
# COCO panoptic 2017 (80 thing + 53 stuff classes).
# Recipe: mmdet's Mask2Former COCO panoptic recipe, mmdet::mask2former/
# mask2former_r50_8xb2-lsj-50e_coco-panoptic.py, kept whole: large-scale jittering (1024x1024,
# scale 0.1-2.0), 16 images per iteration, AdamW lr 1e-4, wd 0.05, eps 1e-8, gradient clipping
# at 0.01, 368,750 iterations (50 epochs of 118k images / 16) with lr x0.1 at 327,778 and
# 355,092, backbone at 0.1 of the lr, no weight decay on the query / level embeddings or on
# norms, evaluation with CocoPanopticMetric (PQ) and CocoMetric (box / mask AP).
# Changed for ConvNeXt V2 (only the backbone block and the optimiser constructor):
# - backbone cnxv2_dense.ConvNeXtV2-T with drop path 0.4, this project's V2-T COCO value
#   (configs/mask_rcnn_cnxv2_t_coco.py; mmdet's Swin-T Mask2Former uses 0.3);
# - weights: the FCMAE pretrain-only weights, as the V2 paper initialises its COCO models
#   (Appendix A.3), not the ImageNet fine-tuned ones;
# - layer-wise lr decay inside the backbone: layer_wise 0.95 with num_layers 6 (the project's
#   V2-T COCO values), multiplied with the base's backbone x0.1 (custom_keys_mode='multiply', so
#   the backbone's LayerNorms, GRN and biases keep no weight decay; docs/layer_decay.md). The
#   x0.1 is the toolbox's Mask2Former setting for every backbone; the V2 paper's Mask R-CNN
#   recipe trains the backbone at the full lr times the layer decay instead, which pretrain-only
#   weights may need. Untested here.
# Closest published numbers (mmdet's metafile, mmdet/.mim/configs/mask2former/metafile.yml):
# Mask2Former Swin-T (IN-1K), this recipe, 53.4 PQ (46.3 box AP, 43.4 mask AP); R-50 52.0 PQ. No
# ConvNeXt V2 + Mask2Former result is published. Not trained by this project.
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py']
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

# Official FCMAE pretrain-only weights (CC-BY-NC 4.0); any format docs/checkpoints.md lists works
# here, e.g. --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/my_fcmae/backbone.pth
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_tiny_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,  # replace mmdet's ResNet-50 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))  # passed on to the pixel decoder

# The base's AdamW, gradient clipping and paramwise_cfg (custom_keys 'backbone' lr_mult 0.1,
# 'query_embed' / 'query_feat' / 'level_embed' decay_mult 0, norm_decay_mult 0) are inherited
# and honoured; this adds the layer decay: a backbone parameter with layer id i trains at
# 0.1 * 0.95 ** (num_layers + 1 - i) of the head's lr.
optim_wrapper = dict(
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6,
                       custom_keys_mode='multiply'))
