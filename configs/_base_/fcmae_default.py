# FCMAE pretraining of ConvNeXt V2 on ImageNet-1K: the official recipe (ConvNeXt V2 paper,
# arXiv 2301.00808, Sec. 3 / Appendix A.1, and the official main_pretrain.py): 224 px
# RandomResizedCrop scale (0.2, 1.0) bicubic + horizontal flip, mask ratio 0.6 on a 32 px grid,
# decoder one ConvNeXt V2 block 512 wide, loss on patch-normalised pixels (norm_pix_loss: the
# official main_pretrain.py sets it on), AdamW betas (0.9, 0.95) wd 0.05, base lr 1.5e-4 per
# 256 images, 40 warmup epochs then cosine to 0, 800 epochs. GRN statistics are per image over
# visible positions, as in the official JAX model the paper was trained with (docs/fcmae.md). The size configs
# (fcmae_cnxv2_{atto,t,b,l}_in1k.py) inherit this file and set the arch.
#
#   python tools/train.py configs/fcmae_cnxv2_t_in1k.py [--amp] [--resume]
#   python -m torch.distributed.run --nproc_per_node 8 tools/train.py CONFIG --launcher pytorch
#
# The exported encoder (tools/pretrain_fcmae.py --export-only CKPT) loads into the detection /
# segmentation configs as backbone init_cfg=dict(type='Pretrained', checkpoint=...).
default_scope = 'mmengine'  # pure mmengine + mmcv; our types are spelled cnxv2_dense.X
custom_imports = dict(imports=['cnxv2_dense', 'cnxv2_dense.datasets'], allow_failed_imports=False)

data_root = 'data/imagenet/train'  # an image folder; class sub-folders are fine (labels unused)
image_size = 224

model = dict(
    type='cnxv2_dense.FCMAE',
    arch='tiny',
    mask_ratio=0.6,
    patch_size=32,
    decoder_dim=512,
    decoder_depth=1,
    norm_pix_loss=True,  # target: each patch's pixels normalised by its own mean / std
    data_preprocessor=dict(
        type='ImgDataPreprocessor',  # mmengine's: BGR -> RGB, ImageNet mean / std
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True))

train_pipeline = [
    dict(type='cnxv2_dense.LoadImage'),  # unreadable files are skipped and reported
    dict(type='cnxv2_dense.RandomResizedCrop', scale=image_size, crop_ratio_range=(0.2, 1.0),
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),  # mmcv's
    dict(type='cnxv2_dense.PackImageInputs'),
]
train_dataloader = dict(
    batch_size=64,  # per GPU; the official run used 64 x 64 GPUs = 4096
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='cnxv2_dense.ImageFolderDataset', data_root=data_root,
                 pipeline=train_pipeline))

# Schedule: 800 epochs, of which 40 linear warmup, then cosine to 0 (per iteration).
max_epochs = 800
warmup_epochs = 40
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05),
    # No decay on biases and 1-D parameters (norms, GRN gamma/beta), like timm's add_weight_decay.
    paramwise_cfg=dict(flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min=0.0, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
# lr above is per 256 images: the runner multiplies it by (GPUs x batch_size) / 256.
# (mmengine does not count gradient accumulation in this product.)
auto_scale_lr = dict(enable=True, base_batch_size=256)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),  # loss, lr, time and ETA
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=20, max_keep_ckpts=3, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
