# Mask2Former (semantic), ConvNeXt V2-L (FCMAE + IN-22K fine-tuned weights), 640x640 crops, 160k
# iterations, ADE20K.
# Recipe: mmseg's Mask2Former Swin-L ADE20K recipe, mmseg::mask2former/
# mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py, kept whole: 640 crops
# (images rescaled to a shorter side of 320-1280, longer <= 2560), 16 images per iteration, AdamW
# lr 1e-4, wd 0.05, eps 1e-8, gradient clipping at 0.01, poly lr (power 0.9) over 160k
# iterations, whole-image test, backbone at 0.1 of the lr, no weight decay on the query / level
# embeddings and norms.
# Changed for ConvNeXt V2 (only the backbone block and the optimiser):
# - backbone cnxv2_dense.ConvNeXtV2-L (the same widths as Swin-L, 192-1536) with drop path 0.4,
#   this project's V2-L ADE20K value (configs/upernet_cnxv2_l_640_ade20k.py);
# - weights: FCMAE + ImageNet-22K fine-tuned, the V2 paper's "22K ft" setting, the one it pairs
#   with 640 crops (Table 7), as mmseg pairs Swin-L IN-22K with them;
# - the base's Swin-specific custom_keys (relative_position_bias_table, absolute_pos_embed, the
#   per-block Swin norms) are replaced by the generic ones of mmseg's R-50 / Swin-T bases
#   ('backbone' x0.1, 'query_embed' / 'query_feat' / 'level_embed' without weight decay): they
#   name no ConvNeXt V2 parameter, and the layer-decay constructor refuses keys that apply to
#   nothing;
# - layer decay: stage-wise 0.9 with num_layers 12, times the backbone x0.1
#   (custom_keys_mode='multiply'; docs/layer_decay.md).
# Closest published number (mmseg's metafile, mmseg/.mim/configs/mask2former/metafile.yaml):
# Mask2Former Swin-L (IN-22K, 384 px), this recipe, 56.01 mIoU. No ConvNeXt V2 + Mask2Former
# result is published. Not trained by this project.
_base_ = ['mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py']
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im22k/convnextv2_large_22k_224_ema.pt'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,  # replace mmseg's Swin-L entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='large',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 384, 768, 1536]))

embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        decay_rate=0.9, decay_type='stage_wise', num_layers=12, custom_keys_mode='multiply',
        custom_keys=dict(
            _delete_=True,  # drop the Swin keys, keep the R-50 / Swin-T bases' generic ones
            backbone=dict(lr_mult=0.1, decay_mult=1.0),
            query_embed=embed_multi,
            query_feat=embed_multi,
            level_embed=embed_multi)))
