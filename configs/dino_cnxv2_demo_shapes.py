# Demo: DINO-4scale with a ConvNeXt V2-atto backbone, trained from scratch on the embedded
# synthetic shapes dataset (3 classes, 128 px, 400 training and 100 val images, written by
# tools/make_demo_data.py): the data, image size, batch and evaluation of
# configs/mask_rcnn_cnxv2_demo_shapes.py, with mmdet's DINO (mmdet::dino/
# dino-4scale_r50_8xb2-12e_coco.py) in place of Mask R-CNN. Reports COCO bbox mAP (DINO predicts
# no masks). It is a smoke-scale recipe, not a COCO recipe: the transformer is slimmed (3 encoder
# and 3 decoder layers instead of 6 + 6, 100 queries instead of 900) so it trains on 2 CPU cores;
# the multi-scale deformable attention runs through mmcv's PyTorch path there.
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py']
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

data_root = 'data/shapes_coco/'
classes = ('circle', 'square', 'triangle')
metainfo = dict(classes=classes, palette=[(220, 20, 60), (0, 128, 255), (255, 200, 0)])
image_size = 128
# NOTE: 256 as in the COCO recipe, not fewer: mmdet 3.3's DinoTransformerDecoder encodes the
# reference points with coordinate_to_encoding's fixed num_feats=128 (a 512-d embedding) and
# feeds them to an MLP built for 2 * embed_dims inputs, so any other width fails at the first
# decoder layer.
embed_dims = 256
heads = 8  # as the COCO recipe; 32 channels per head

model = dict(
    num_queries=100,
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,  # replace mmdet's ResNet-50 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='atto',
        out_indices=(1, 2, 3),  # strides 8-32, as the recipe's R-50
        drop_path_rate=0.0,  # too few epochs for stochastic depth to help
        channels_last=True,  # same outputs, faster on CPU
        init_cfg=None),  # from scratch; set a checkpoint here to fine-tune
    neck=dict(in_channels=[80, 160, 320], out_channels=embed_dims),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=heads),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=4 * embed_dims))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_heads=heads),
            cross_attn_cfg=dict(embed_dims=embed_dims, num_heads=heads),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=4 * embed_dims))),
    positional_encoding=dict(num_feats=embed_dims // 2),
    bbox_head=dict(num_classes=len(classes), embed_dims=embed_dims),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=50)),
    test_cfg=dict(max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# 400 train images / batch 8 = 50 iterations per epoch; 4 epochs, because an iteration costs
# about 4.5 s on 2 CPU cores (the Mask R-CNN demo's: 1 s), in the deformable attention's PyTorch
# path (docs/query_heads.md compares it with the Mask R-CNN demo at equal epochs).
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
# AdamW through the layer-decay constructor with decay 1.0 (no decay): from scratch there is no
# pretrained representation to protect, and for the same reason the recipe's backbone lr_mult
# 0.1 (meant for pretrained backbones) is set to 1. The recipe's weight decay (1e-4) and
# gradient clipping (0.1) are kept.
optim_wrapper = dict(
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    optimizer=dict(lr=5e-4, foreach=True),
    paramwise_cfg=dict(decay_rate=1.0, custom_keys_mode='multiply',
                       custom_keys=dict(backbone=dict(lr_mult=1.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5,
         convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(enable=False, base_batch_size=8)
randomness = dict(seed=0)
