# Mask R-CNN, ConvNeXt V2-B (FCMAE IN-1K pretrain-only weights), FPN, LSJ 1024, 3x, COCO 2017.
# Recipe: the ConvNeXt V2 paper's COCO setting (Appendix A.3; configs/_base_/
# mask_rcnn_cnxv2_fpn_lsj_3x_coco.py): AdamW lr 1e-4, wd 0.05, 32 images per iteration, soft-NMS
# single-scale test; from the paper's sweeps, layer-wise decay 0.95 (num_layers 12) and drop path
# 0.4, the values of mmdetection's projects/ConvNeXt-V2 V2-B config, which reached 52.9 box AP /
# 46.4 mask AP with them.
# Target (ConvNeXt V2 paper, Table 6, COCO val2017): V2-B FCMAE 52.9 box AP / 46.6 mask AP;
# V2-B supervised 51.0 / 45.6; V1-B supervised 50.3 / 44.9. Not yet reproduced by this project.
_base_ = ['./_base_/mask_rcnn_cnxv2_fpn_lsj_3x_coco.py']

# Official FCMAE pretrain-only weights (CC-BY-NC 4.0): the paper initialises COCO models with the
# final weights of FCMAE pretraining, not the ImageNet fine-tuned ones.
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_base_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.95))
