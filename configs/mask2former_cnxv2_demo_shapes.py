# Demo: Mask2Former (semantic) with a ConvNeXt V2-atto backbone, trained from scratch on the
# embedded synthetic shapes dataset in its ADE20K-style layout (background + 3 classes, 128 px,
# 4000 training and 100 val images, written by `python tools/make_demo_data.py --layout ade`):
# the data, crops, batch, augmentation and evaluation of configs/upernet_cnxv2_demo_shapes.py,
# with mmseg's Mask2Former head (mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py)
# in place of UperNet. It is a smoke-scale recipe, not an ADE20K recipe: the head is slimmed
# (64 channels instead of 256, 2 pixel-decoder and 3 transformer-decoder layers instead of 6 and
# 9, 20 queries instead of 100, 1024 sampled points per mask instead of 12544) so it trains on
# 2 CPU cores; the multi-scale deformable attention runs through mmcv's PyTorch path there.
_base_ = ['mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py']
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

data_root = 'data/shapes_ade/'
classes = ('background', 'circle', 'square', 'triangle')
# Same colours as cnxv2_dense.datasets.PALETTE (background black).
metainfo = dict(classes=classes,
                palette=[(0, 0, 0), (220, 20, 60), (0, 128, 255), (255, 200, 0)])
num_classes = len(classes)
image_size = 128
crop_size = (image_size, image_size)
channels = 64  # 256 in the ADE20K recipe
heads = 4  # 8 in the ADE20K recipe; 16 channels per head

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,  # replace mmseg's ResNet-50 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='atto',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,  # too few iterations for stochastic depth to help
        channels_last=True,  # same outputs, faster on CPU (as the UperNet demo)
        init_cfg=None),  # from scratch; to fine-tune see docs/custom_data_seg.md
    decode_head=dict(
        in_channels=[40, 80, 160, 320],
        feat_channels=channels,
        out_channels=channels,
        num_classes=num_classes,
        num_queries=20,
        pixel_decoder=dict(
            encoder=dict(
                num_layers=2,
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=channels, num_heads=heads),
                    ffn_cfg=dict(embed_dims=channels, feedforward_channels=4 * channels))),
            positional_encoding=dict(num_feats=channels // 2)),
        positional_encoding=dict(num_feats=channels // 2),
        transformer_decoder=dict(
            num_layers=3,  # one round over the 3 feature levels
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=channels, num_heads=heads),
                cross_attn_cfg=dict(embed_dims=channels, num_heads=heads),
                ffn_cfg=dict(embed_dims=channels, feedforward_channels=4 * channels))),
        # one weight per class, then the "no object" class (mmseg's 0.1)
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        train_cfg=dict(num_points=32 * 32)),  # the 1/4-resolution mask of a 128 px image
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label from the dataset (False: 0 is a class)
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
# mmseg's BaseSegDataset with our classes and palette, as in the UperNet demo.
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.png', seg_map_suffix='.png', reduce_zero_label=False)
train_dataloader = dict(batch_size=8, num_workers=1,
                        dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=1,
                      dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# 4000 train images / batch 8 = 500 iterations per pass; 600 iterations (1.2 passes, about 8 min
# on 2 CPU cores: 0.7 s an iteration, the UperNet demo's 0.3 s), a short schedule chosen for the
# time a session had; docs/query_heads.md compares it with UperNet at equal iterations.
max_iters = 600
val_interval = 150
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
# AdamW through the layer-decay constructor with decay 1.0 (no decay), as the UperNet demo: from
# scratch there is no pretrained representation to protect. For the same reason the base's
# backbone lr_mult 0.1 (meant for pretrained backbones) is set to 1; its no weight decay on the
# query / level embeddings and on norms is kept.
optim_wrapper = dict(
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    optimizer=dict(lr=1e-3, foreach=True),
    paramwise_cfg=dict(decay_rate=1.0, decay_type='stage_wise', custom_keys_mode='multiply',
                       custom_keys=dict(backbone=dict(lr_mult=1.0))))
warmup_iters = 100
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=warmup_iters,
         end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1, save_best=None))
env_cfg = dict(cudnn_benchmark=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)
randomness = dict(seed=0)
