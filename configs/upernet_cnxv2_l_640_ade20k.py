# UperNet, ConvNeXt V2-L, 640x640 crops, 160k iterations, ADE20K: upernet_cnxv2_l_ade20k.py with
# the crop size the ConvNeXt recipes use for IN-22K-pretrained B / L / XL backbones (V1
# upernet_convnext_large_640_160k_ade20k: 640 crops, slide stride 426, drop path 0.4).
# Weights: the IN-1K FCMAE checkpoint by default, like the other configs; for the 22K setting
# load the official IN-22K fine-tuned V2-L weights (CC-BY-NC 4.0) instead:
# --cfg-options model.backbone.init_cfg.checkpoint=https://dl.fbaipublicfiles.com/convnext/convnextv2/im22k/convnextv2_large_22k_224_ema.pt
# Reported reference: 53.7 mIoU for V2-L FCMAE (ConvNeXt V2 paper); V1-L IN-22K reaches 53.2
# single-scale with this recipe (ConvNeXt V1 repository). Not yet reproduced by this project.
_base_ = ['./upernet_cnxv2_l_ade20k.py']

crop_size = (640, 640)
# mmseg's ade20k_640x640.py pipelines: images rescaled to 2560x640 x (0.5-2.0), 640 crops.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2560, 640), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(
    data_preprocessor=dict(size=crop_size),
    # 640x640 windows overlapping by a third (stride 426), as in the V1 640 configs.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))
