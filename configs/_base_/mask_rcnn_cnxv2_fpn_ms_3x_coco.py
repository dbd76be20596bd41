# Mask R-CNN FPN with the ConvNeXt V2 backbone on the shared ConvNeXt COCO recipe.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', './cnxv2_coco_ms_3x.py']

# Official FCMAE weights (CC-BY-NC 4.0); any format docs/checkpoints.md lists works here, e.g.
# --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/my_fcmae/backbone.pth
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_tiny_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,  # replace mmdet's ResNet-50 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
