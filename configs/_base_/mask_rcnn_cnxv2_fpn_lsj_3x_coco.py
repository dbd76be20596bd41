# The ConvNeXt V2 paper's COCO recipe for Mask R-CNN (arXiv 2301.00808, Appendix A.3): MMDetection,
# the FCMAE ImageNet-1K pretrained weights as initialisation, 3x schedule (36 epochs), 32 images
# per iteration, AdamW lr 1e-4 / wd 0.05 with layer-wise lr decay (swept over {0.9, 0.95}) and
# stochastic depth (swept over {0.2, 0.3, 0.4, 0.5}), large-scale jittering at 1024x1024 with scale
# range [0.1, 2.0], single-scale test with soft-NMS. The size configs pick the decay rate and the
# drop path from those sweeps (the paper does not say which point each size used).
# Not stated by the paper, so taken from elsewhere: lr steps at epochs 27 / 33 (the 3x schedule of
# MMDetection and of the ConvNeXt V1 configs); 1000 warmup iterations and soft-NMS in the R-CNN
# stage only (RPN keeps NMS), as in mmdetection's projects/ConvNeXt-V2 Mask R-CNN V2-B config, the
# only public V2 COCO recipe, which reached the paper's box AP (52.9) with them; AMP (see
# cnxv2_coco_ms_3x.py for why it is safe with this backbone).
_base_ = ['./mask_rcnn_cnxv2_fpn_ms_3x_coco.py']

image_size = (1024, 1024)
model = dict(
    data_preprocessor=dict(
        # LSJ crops are padded to one fixed size so every batch has the same shape.
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    # Soft-NMS (mmcv's linear decay) on the final detections; IoU threshold 0.5 as mmdet's NMS.
    test_cfg=dict(rcnn=dict(nms=dict(type='soft_nms', iou_threshold=0.5))))
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
# 8 GPUs x 4 images = 32 images per iteration (paper, Appendix A.3).
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
auto_scale_lr = dict(enable=False, base_batch_size=32)

# 3x: 36 epochs, lr x0.1 at epochs 27 and 33, after 1000 linear warmup iterations (see above).
warmup_iters = 1000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True,
         milestones=[27, 33], gamma=0.1),
]
# AdamW lr 1e-4, wd 0.05 and layer_wise decay come from the base; num_layers 12 for the depth-27
# third stage of B / L / H (3 + 26 // 3 = 11 block ids, stage 3 and its downsample at 12).
optim_wrapper = dict(paramwise_cfg=dict(decay_type='layer_wise', num_layers=12))
