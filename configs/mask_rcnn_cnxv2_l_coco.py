# Mask R-CNN, ConvNeXt V2-L (FCMAE IN-1K pretrain-only weights), FPN, LSJ 1024, 3x, COCO 2017.
# Recipe: the ConvNeXt V2 paper's COCO setting (Appendix A.3; configs/_base_/
# mask_rcnn_cnxv2_fpn_lsj_3x_coco.py): AdamW lr 1e-4, wd 0.05, 32 images per iteration, soft-NMS
# single-scale test. Layer-wise decay 0.9 (num_layers 12) and drop path 0.5 are points of the
# paper's sweeps ({0.9, 0.95} and {0.2 ... 0.5}); which point L used is not published: we take the
# stronger regularisation for the wider model, as the ConvNeXt V1 recipes do for L against B.
# AMP as for B: the V1 Large recipe trained in fp32, but here LayerNorm and GRN compute in fp32.
# Target (ConvNeXt V2 paper, Table 6, COCO val2017): V2-L FCMAE 54.4 box AP / 47.7 mask AP;
# V2-L supervised 51.5 / 45.8; V1-L supervised 50.6 / 45.1. Not yet reproduced by this project.
_base_ = ['./_base_/mask_rcnn_cnxv2_fpn_lsj_3x_coco.py']

# Official FCMAE pretrain-only weights (CC-BY-NC 4.0), as the paper initialises COCO models.
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_large_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.5,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9))
