# Demo: UperNet with a ConvNeXt V2-atto backbone, trained from scratch on the embedded synthetic
# shapes dataset in its ADE20K-style layout (background + 3 classes, 128 px, 4000 training and
# 100 val images, written by `python tools/make_demo_data.py --layout ade`). Runs on 2 CPU cores
# in about 22 minutes and reports mIoU (mmseg's IoUMetric) on the val split; the measured numbers
# are in docs/demo_experiments.md, with a 7-minute variant (1200 iterations). It is a smoke-scale
# recipe, not an ADE20K recipe: UperNet is slimmed (64 channels, BN instead of the GPU recipes'
# SyncBN, which needs a GPU process group) so it trains quickly on 2 cores.
_base_ = [
    'mmseg::_base_/models/upernet_convnext.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

data_root = 'data/shapes_ade/'
classes = ('background', 'circle', 'square', 'triangle')
# Same colours as cnxv2_dense.datasets.PALETTE (background black).
metainfo = dict(classes=classes,
                palette=[(0, 0, 0), (220, 20, 60), (0, 128, 255), (255, 200, 0)])
image_size = 128
crop_size = (image_size, image_size)
head_channels = 64
norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN cannot run on CPU
# Background covers ~86% of the pixels: at full weight the from-scratch model sits for hundreds
# of iterations predicting background everywhere (mIoU 21.5). Down-weighting it in the loss
# makes it leave that state within the first 100-200 iterations. mmseg 1.2.2's CrossEntropyLoss
# fails on ignored pixels (255) when class_weight is set, so the train pipeline never pads.
class_weight = [0.2, 1.0, 1.0, 1.0]
loss_ce = dict(type='CrossEntropyLoss', use_sigmoid=False, class_weight=class_weight)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,  # replace mmpretrain's ConvNeXt V1 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='atto',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,  # too few iterations for stochastic depth to help
        channels_last=True,  # same outputs; the demo ran 1.5x faster on CPU (depthwise 7x7)
        init_cfg=None),  # from scratch; to fine-tune see docs/custom_data_seg.md section 3
    decode_head=dict(
        in_channels=[40, 80, 160, 320],
        channels=head_channels,  # 512 in the ADE20K recipe
        pool_scales=(1, 2, 4),  # the stage-3 map is only 4x4 px at 128 px input
        num_classes=len(classes),
        norm_cfg=norm_cfg,
        loss_decode=dict(loss_ce, loss_weight=1.0)),
    auxiliary_head=dict(
        in_channels=160,  # stage 2 of atto
        channels=head_channels,  # 256 in the ADE20K recipe
        num_classes=len(classes),
        norm_cfg=norm_cfg,
        loss_decode=dict(loss_ce, loss_weight=0.4)),
    # Val images are exactly one crop, so whole-image inference (slide mode, as in the ADE20K
    # configs, gives the same result here and is exercised by the tests).
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label from the dataset (False: 0 is a class)
    # Scale up only (1-1.5x): every crop is then a full 128x128 crop, with no padded pixels.
    dict(type='RandomResize', scale=crop_size, ratio_range=(1.0, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.95),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
# mmseg's BaseSegDataset with our classes and palette (ADE20KDataset fixes the 150 ADE classes,
# .jpg images and reduce_zero_label=True); the folders are the ADE20K base's images/training etc.
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False)
train_dataloader = dict(batch_size=8, num_workers=1,
                        dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=1, dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# 4000 train images / batch 8 = 500 iterations per pass; 3600 iterations = 7.2 passes. From
# scratch this atto needs both the data and the iterations: on 400 images it fits the training
# set and stays near 43 mIoU; on these 4000 it is ~46 at 1200 iterations and passes 50 near 3000.
max_iters = 3600
val_interval = 600
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
# AdamW through the layer-decay constructor, with decay 1.0 (no decay): from scratch there is no
# pretrained representation to protect. Fine-tuning from an FCMAE checkpoint would use the
# recipe's stage_wise 0.9 (configs/_base_/upernet_cnxv2_ade20k.py).
optim_wrapper = dict(
    _delete_=True,  # drop the base schedule's SGD
    type='OptimWrapper',
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    # foreach: one multi-tensor update instead of a loop over parameters (7% faster per
    # iteration on 2 CPU cores; torch uses it by default only for CUDA tensors).
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.05, foreach=True),
    paramwise_cfg=dict(decay_rate=1.0, decay_type='stage_wise'),
    clip_grad=dict(max_norm=10.0))
warmup_iters = 100
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)
# A fixed seed makes the model init, data order and augmentations the same in every run: with the
# same number of threads a run repeats bit for bit; another thread count changes the order of
# float sums, so the numbers differ a little.
randomness = dict(seed=0)
