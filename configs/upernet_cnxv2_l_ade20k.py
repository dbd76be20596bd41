# UperNet, ConvNeXt V2-L (FCMAE IN-1K pretrained), 512x512, 160k iterations, ADE20K.
# Recipe: the ConvNeXt UperNet recipe (configs/_base_/upernet_cnxv2_ade20k.py): AdamW lr 1e-4,
# wd 0.05, stage-wise decay 0.9 with num_layers 12, 16 images per iteration, AMP; drop path 0.4,
# the value of the V1-L ADE20K config (which used 22k weights and 640 crops; the V2 paper gives
# no per-size drop path for ADE20K). See upernet_cnxv2_l_640_ade20k.py for 640x640 crops.
# Reported reference: 53.7 mIoU for V2-L FCMAE (ConvNeXt V2 paper, ADE20K UperNet results;
# check the paper's pretraining setting for that row before comparing: this config loads the
# IN-1K FCMAE-only weights). Not yet reproduced by this project.
_base_ = ['./_base_/upernet_cnxv2_ade20k.py']

# Official FCMAE weights (CC-BY-NC 4.0); override with
# --cfg-options model.backbone.init_cfg.checkpoint=PATH (any format docs/checkpoints.md lists).
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_large_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.4,  # V1-L ADE20K config
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))  # depth-27 third stage
