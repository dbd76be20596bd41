# Mask2Former (semantic), ConvNeXt V2-B (FCMAE + IN-1K fine-tuned weights), 512x512 crops, 160k
# iterations, ADE20K: mask2former_cnxv2_t_ade20k.py (mmseg's Mask2Former ADE20K recipe, whole)
# with the V2-B backbone.
# Changed for ConvNeXt V2 (only the backbone block and the optimiser constructor):
# - backbone cnxv2_dense.ConvNeXtV2-B with drop path 0.4, this project's V2-B ADE20K value
#   (configs/upernet_cnxv2_b_ade20k.py, inside the V2 paper's sweep {0.1 ... 0.4});
# - weights: FCMAE + ImageNet-1K fine-tuned, as the V2 paper initialises its ADE20K models
#   (Appendix A.4), at the paper's 512 crops (mmseg's Swin-B Mask2Former configs train at 640
#   from 384-px pretraining);
# - layer decay: stage-wise 0.9 with num_layers 12 (depth-27 third stage), times the base's
#   backbone x0.1 (custom_keys_mode='multiply'; docs/layer_decay.md).
# Closest published number (mmseg's metafile, mmseg/.mim/configs/mask2former/metafile.yaml):
# Mask2Former Swin-B (IN-1K, 384 px), 640x640 crops, 52.44 mIoU. No ConvNeXt V2 + Mask2Former
# result is published. Not trained by this project.
_base_ = ['./mask2former_cnxv2_t_ade20k.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/convnextv2_base_1k_224_ema.pt'  # noqa
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))  # depth-27 third stage
