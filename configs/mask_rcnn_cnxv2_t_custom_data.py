# Template: fine-tune a ConvNeXt V2-T Mask R-CNN on your own COCO-format instance segmentation
# data (docs/custom_data_det.md walks through it). Edit the block below, nothing else is needed.
# Starts from FCMAE weights: the official ones (CC-BY-NC 4.0) or a backbone.pth written by
# tools/pretrain_fcmae.py on your own images. Recipe: mask_rcnn_cnxv2_t_1x_coco.py (12 epochs).
_base_ = ['./mask_rcnn_cnxv2_t_1x_coco.py']

# ---- edit me -------------------------------------------------------------------------------
data_root = 'data/my_dataset/'
classes = ('class_a', 'class_b')
train_ann, train_images = 'annotations/train.json', 'train/'
val_ann, val_images = 'annotations/val.json', 'val/'
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_tiny_1k_224_fcmae.pt'  # noqa
# ---------------------------------------------------------------------------------------------

metainfo = dict(classes=classes)
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    roi_head=dict(bbox_head=dict(num_classes=len(classes)),
                  mask_head=dict(num_classes=len(classes))))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=train_ann,
                                     data_prefix=dict(img=train_images)))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=val_ann,
                                   data_prefix=dict(img=val_images)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + val_ann)
test_evaluator = val_evaluator
