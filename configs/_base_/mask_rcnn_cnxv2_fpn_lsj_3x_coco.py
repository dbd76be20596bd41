# Large-scale-jitter (LSJ) variant of the ConvNeXt V2 Mask R-CNN recipe, after mmdetection's
# pre-release ConvNeXt V2-B FCMAE config: 1024x1024 crops of images rescaled by 0.1-2.0,
# 3x (36 epochs), 32 images per iteration, AdamW lr 1e-4, layer-wise decay 0.95, AMP.
_base_ = ['./mask_rcnn_cnxv2_fpn_ms_3x_coco.py']

image_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(
        # LSJ crops are padded to one fixed size so every batch has the same shape.
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]))
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# 8 GPUs x 4 images = 32 images per iteration.
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
auto_scale_lr = dict(enable=False, base_batch_size=32)
