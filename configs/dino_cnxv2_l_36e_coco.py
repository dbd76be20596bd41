# DINO-5scale, ConvNeXt V2-L (FCMAE IN-1K pretrain-only weights), 36 epochs, COCO 2017 detection:
# dino_cnxv2_l_coco.py with the schedule of mmdet's dino-5scale_swin-l_8xb2-36e_coco.py (its only
# change to the 12-epoch recipe): 36 epochs, lr x0.1 at epochs 27 and 33.
# Closest published number (mmdet's metafile, mmdet/.mim/configs/dino/metafile.yml):
# DINO-5scale Swin-L (IN-22K), this recipe, 58.4 box AP. No ConvNeXt V2 + DINO result is
# published. Not trained by this project.
_base_ = ['./dino_cnxv2_l_coco.py']

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1)
]
