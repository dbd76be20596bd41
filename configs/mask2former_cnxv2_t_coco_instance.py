# Mask2Former (instance), ConvNeXt V2-T (FCMAE IN-1K pretrain-only weights), LSJ 1024, 50 epochs,
# COCO 2017 instances (80 classes).
# Recipe: mmdet's Mask2Former COCO instance recipe, mmdet::mask2former/
# mask2former_r50_8xb2-lsj-50e_coco.py, kept whole (the panoptic recipe of
# mask2former_cnxv2_t_coco_panoptic.py with 0 stuff classes, instance annotations, CocoMetric
# box / mask AP, panoptic output off).
# Changed for ConvNeXt V2 (only the backbone block and the optimiser constructor), as in
# mask2former_cnxv2_t_coco_panoptic.py: ConvNeXtV2-T with drop path 0.4; the FCMAE pretrain-only
# weights (V2 paper, Appendix A.3: COCO models start from them); layer_wise decay 0.95 with
# num_layers 6 times the base's backbone x0.1 (custom_keys_mode='multiply').
# Closest published numbers (mmdet's metafile, mmdet/.mim/configs/mask2former/metafile.yml):
# Mask2Former Swin-T (IN-1K), this recipe, 47.7 box AP / 44.7 mask AP; R-50 45.7 / 42.9. No
# ConvNeXt V2 + Mask2Former result is published. Not trained by this project.
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py']
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)

pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_tiny_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(
        _delete_=True,  # replace mmdet's ResNet-50 entirely
        type='cnxv2_dense.ConvNeXtV2',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))  # passed on to the pixel decoder

# The base's optimiser and paramwise_cfg are inherited and honoured; layer decay added on top.
optim_wrapper = dict(
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6,
                       custom_keys_mode='multiply'))
