# Mask R-CNN, ConvNeXt V2-B, the 3x recipe (mask_rcnn_cnxv2_b_coco.py) shortened to mmdet's 1x:
# 12 epochs, lr steps at 8 and 11. No published reference number for this schedule.
_base_ = ['./mask_rcnn_cnxv2_b_coco.py']

max_epochs = 12
warmup_iters = 1000  # the 3x recipe's warmup (mmdetection V2-B)
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
