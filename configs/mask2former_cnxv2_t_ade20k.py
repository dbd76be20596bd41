# Mask2Former (semantic), ConvNeXt V2-T (FCMAE + IN-1K fine-tuned weights), 512x512 crops, 160k
# iterations, ADE20K.
# Recipe: mmseg's Mask2Former ADE20K recipe, mmseg::mask2former/
# mask2former_r50_8xb2-160k_ade20k-512x512.py, kept whole: 16 images per iteration, AdamW lr 1e-4,
# wd 0.05, eps 1e-8, gradient clipping at norm 0.01, poly lr (power 0.9) over 160k iterations with
# no warmup, multi-scale 0.5-2.0x resize + 512 crops + photometric distortion, whole-image test,
# backbone at 0.1 of the lr and no weight decay on the query / level embeddings or on norms.
# Changed for ConvNeXt V2 (only the backbone block and the optimiser constructor):
# - backbone cnxv2_dense.ConvNeXtV2-T with drop path 0.4, this project's V2-T ADE20K value
#   (configs/upernet_cnxv2_t_ade20k.py: the ConvNeXt V1 recipe's, inside the V2 paper's sweep
#   {0.1 ... 0.4}; mmseg's Swin-T Mask2Former uses 0.3);
# - weights: FCMAE + ImageNet-1K fine-tuned, as the V2 paper initialises its ADE20K models
#   (Appendix A.4: "superior to using the self-supervised pre-trained weights directly");
# - layer-wise lr decay inside the backbone: stage-wise 0.9 with num_layers 6 (the project's
#   V2-T UperNet values), multiplied with the base's backbone x0.1 (custom_keys_mode='multiply',
#   so the backbone's LayerNorms, GRN and biases keep no weight decay; docs/layer_decay.md).
# Closest published number (mmseg's metafile, mmseg/.mim/configs/mask2former/metafile.yaml):
# Mask2Former Swin-T (IN-1K), this recipe, 48.66 mIoU; R-50 47.87. No ConvNeXt V2 + Mask2Former
# result is published. Not trained by this project.
_base_ = ['mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py']
# Replaces the base's `imports='mmdet.models'`: mmseg's Mask2FormerHead imports mmdet itself.
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

# Official FCMAE + ImageNet-1K fine-tuned weights (CC-BY-NC 4.0); any format docs/checkpoints.md
# lists works here, e.g. --cfg-options model.backbone.init_cfg.checkpoint=PATH
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/convnextv2_tiny_1k_224_ema.pt'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,  # replace mmseg's ResNet-50 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]))

# The base's AdamW, gradient clipping and paramwise_cfg (custom_keys 'backbone' lr_mult 0.1,
# 'query_embed' / 'query_feat' / 'level_embed' decay_mult 0, norm_decay_mult 0) are inherited
# and honoured; this adds the layer decay. Backbone stage i then trains at
# 0.1 * 0.9 ** (num_layers + 1 - (i + 1)) of the head's lr, its downsample layers at
# 0.1 * 0.9 ** (num_layers + 1).
optim_wrapper = dict(
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6,
                       custom_keys_mode='multiply'))
