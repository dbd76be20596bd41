# DINO-4scale, ConvNeXt V2-T (FCMAE IN-1K pretrain-only weights), 36 epochs, COCO 2017 detection:
# dino_cnxv2_t_coco.py with the schedule of mmdet's dino-4scale_r50_8xb2-36e_coco.py (its only
# change to the 12-epoch recipe): 36 epochs, lr x0.1 at epoch 30.
# Closest published number: none; mmdet's metafile (mmdet/.mim/configs/dino/metafile.yml) lists
# the 36-epoch R-50 config without a result (49.0 box AP at 12 epochs). Not trained by this
# project.
_base_ = ['./dino_cnxv2_t_coco.py']

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[30], gamma=0.1)
]
