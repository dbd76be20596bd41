# Shared recipe of the ConvNeXt V2 UperNet configs on ADE20K (150 classes).
# From the ConvNeXt V2 paper (arXiv 2301.00808, Appendix A.4): MMSegmentation, UperNet, AdamW
# wd 0.05, 16 images per iteration, 160k iterations, 512x512 crops, the backbone initialised with
# the ImageNet-1K *fine-tuned* FCMAE weights ("superior to using the self-supervised pre-trained
# weights directly"), and a multi-scale test at [0.75, 0.875, 1.0, 1.125, 1.25] x 2048x512
# (`tta_pipeline` below; run it with tools/test.py --tta). The paper sweeps lr {1e-4, 2e-4, 3e-4},
# layer-wise decay {0.8, 0.9} and drop path {0.1 ... 0.4} without saying which point each size
# used, so the point of the ConvNeXt V1 ADE20K recipe (V1 repository, semantic_segmentation/
# configs/convnext), which lies inside every sweep, is kept: lr 1e-4, stage-wise decay 0.9,
# drop path 0.4. Also kept from V1, where the paper is silent: auxiliary FCN head (loss weight
# 0.4), poly lr after 1500 warmup iterations, AMP, sliding-window inference, no flip at test.
# The size configs (upernet_cnxv2_{t,b,l,h}_ade20k.py) set the arch, head widths, num_layers and
# weights.
_base_ = [
    'mmseg::_base_/models/upernet_convnext.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
# Replaces the model base's `imports='mmpretrain.models'`: our backbone needs only this package.
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

# Official FCMAE + ImageNet-1K fine-tuned weights (CC-BY-NC 4.0) of the default arch, as the
# paper initialises ADE20K models; each size config sets its own.
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/convnextv2_tiny_1k_224_ema.pt'  # noqa
crop_size = (512, 512)
num_classes = 150
model = dict(
    # Pad every training crop to the crop size (mmseg's ADE20K configs do the same).
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,  # replace mmpretrain's ConvNeXt V1 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # UPerHead (512 channels, pool scales 1/2/3/6, SyncBN) from the model base, on all 4 stages.
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=num_classes),
    # FCNHead on stage 2 (256 channels, SyncBN, loss weight 0.4) from the model base.
    auxiliary_head=dict(in_channels=384, num_classes=num_classes),
    # Single-scale test on 512x512 windows overlapping by a third (stride 341).
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# AdamW with stage-wise lr decay 0.9 (docs/layer_decay.md): stage i trains at
# 0.9 ** (num_layers + 1 - (i + 1)) of the head's lr, the downsample layers at
# 0.9 ** (num_layers + 1).
# num_layers is 6 for T (depth-9 third stage) and 12 for B / L (depth 27), as published.
# AMP as in the V1 ADE20K recipe (use_fp16=True for every size): the ops that overflow in fp16,
# the channel LayerNorms and GRN's spatial L2 norm, compute in fp32 inside this backbone
# (cnxv2_dense/models/layers.py).
optim_wrapper = dict(
    _delete_=True,  # drop the base schedule's SGD
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))

# 160k iterations (schedule_160k: validation and a checkpoint every 16k): linear warmup from
# 1e-6 x lr over the first 1500 iterations, then poly (power 1.0, i.e. linear) decay to 0 at 160k.
max_iters = 160000
warmup_iters = 1500
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_iters),
]

# 16 images per iteration = 8 GPUs x 2; --auto-scale-lr rescales the lr for other totals.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)

# The paper's multi-scale test (Appendix A.4): each image resized (keeping its aspect ratio) to
# fit 2048x512 scaled by 0.75 ... 1.25, logits averaged over the scales; no flip (the paper names
# none). Used by `tools/test.py CONFIG CHECKPOINT --tta`, which wraps the model in mmseg's
# SegTTAModel; without --tta the test is single-scale at 2048x512.
test_scale_ratios = [0.75, 0.875, 1.0, 1.125, 1.25]
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True)
         for r in test_scale_ratios],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')],
    ]),
]
