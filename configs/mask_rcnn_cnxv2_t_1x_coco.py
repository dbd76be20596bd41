# Mask R-CNN, ConvNeXt V2-T (FCMAE IN-1K pretrained), FPN, multi-scale + crop, 1x, COCO 2017.
# The 3x recipe (mask_rcnn_cnxv2_t_coco.py) shortened to 12 epochs with lr steps at 8 and 11,
# mmdet's 1x convention. No published reference number for this schedule.
_base_ = ['./mask_rcnn_cnxv2_t_coco.py']

max_epochs = 12
warmup_iters = 500  # the 3x recipe's warmup (ConvNeXt V1)
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
