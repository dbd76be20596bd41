# Cascade Mask R-CNN FPN with the ConvNeXt V2 backbone on the shared ConvNeXt COCO recipe.
# Box heads as in the ConvNeXt Cascade recipe: 4 shared convs + 1 fc, SyncBN, GIoU loss
# (weight 10) on decoded boxes, one head per cascade stage with mmdet's per-stage target stds.
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py', './cnxv2_coco_ms_3x.py']

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_tiny_1k_224_fcmae.pt'  # noqa
stage_target_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
model = dict(
    backbone=dict(
        _delete_=True,  # replace mmdet's ResNet-50 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]),
    roi_head=dict(bbox_head=[
        dict(type='ConvFCBBoxHead',
             num_shared_convs=4,
             num_shared_fcs=1,
             in_channels=256,
             conv_out_channels=256,
             fc_out_channels=1024,
             roi_feat_size=7,
             num_classes=80,
             bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                             target_stds=stds),
             reg_class_agnostic=False,
             reg_decoded_bbox=True,
             norm_cfg=dict(type='SyncBN', requires_grad=True),
             loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
             loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        for stds in stage_target_stds]))
