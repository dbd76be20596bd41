# UperNet, ConvNeXt V2-L (FCMAE + IN-22K fine-tuned weights), 640x640 crops, 160k iterations,
# ADE20K: upernet_cnxv2_l_ade20k.py with the 640 setting. The ConvNeXt V2 paper uses 640 crops only
# for its "FCMAE, 22K ft" row (V2-H, 57.0 mIoU, Table 7: FCMAE pretraining, then IN-22K supervised
# fine-tuning); it reports no V2-L number in that setting. So this follows that setting for L:
# the official IN-22K fine-tuned V2-L weights (CC-BY-NC 4.0) and the ConvNeXt V1 640 recipe
# (V1 upernet_convnext_large_640_160k_ade20k: 640 crops, slide stride 426, drop path 0.4).
# Reference: V1-L IN-22K reaches 53.2 mIoU single-scale, 53.7 multi-scale + flip with this recipe
# (ConvNeXt V1 repository, semantic_segmentation/README). Not yet reproduced by this project.
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
# The 640 multi-scale test (tools/test.py --tta) scales 2560x640 by the paper's ratios.
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(2560 * r), int(640 * r)), keep_ratio=True)
         for r in [0.75, 0.875, 1.0, 1.125, 1.25]],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')],
    ]),
]
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im22k/convnextv2_large_22k_224_ema.pt'  # noqa
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    data_preprocessor=dict(size=crop_size),
    # 640x640 windows overlapping by a third (stride 426), as in the V1 640 configs.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(426, 426)))
