# Shared data, schedule and optimiser of the ConvNeXt V1 COCO recipe (ConvNeXt V1 repository,
# object_detection/configs/convnext: multi-scale + crop augmentation from DETR, AdamW with
# layer-wise lr decay, 3x = 36 epochs, 16 images per iteration, AMP), evaluated with COCO bbox /
# segm mAP and mmdet's standard NMS. Used where the ConvNeXt V2 paper reports no number of its
# own (V2-T Mask R-CNN, every Cascade Mask R-CNN); the paper's Mask R-CNN recipe (LSJ, 32 images,
# soft-NMS) is mask_rcnn_cnxv2_fpn_lsj_3x_coco.py. The model bases (mask_rcnn_*,
# cascade_mask_rcnn_*) add the detector; size configs set arch, lr, decay, weights.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

# Multi-scale training with random crops (DETR / ConvNeXt V1 detection recipe).
train_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
                (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)],
              keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
              allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=train_scales, keep_ratio=True)],
    ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

# 3x schedule: 36 epochs, lr x0.1 at epochs 27 and 33 (V1 configs: lr_config step=[27, 33]),
# after 500 linear warmup iterations from 0.001 x lr (the warmup of the mmdet 2.x schedule_1x
# the V1 configs inherit).
max_epochs = 36
warmup_iters = 500
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]

# AdamW with layer-wise lr decay from the head down to the stem (docs/layer_decay.md).
# AMP as in the V1 T/S/B recipes (use_fp16=True there). The V1 Large/XL Cascade recipes trained
# in fp32; AMP is kept for every size here because the ops that overflow in fp16 (the channel
# LayerNorms and GRN's spatial L2 norm) compute in fp32 inside this backbone
# (cnxv2_dense/models/layers.py), and the dynamic loss scale skips steps whose grads overflow.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))

# The recipe's lr is for 16 images per iteration (8 GPUs x 2); --auto-scale-lr rescales it.
auto_scale_lr = dict(enable=False, base_batch_size=16)
