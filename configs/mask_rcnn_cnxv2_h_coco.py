# Mask R-CNN, ConvNeXt V2-H (FCMAE IN-1K pretrain-only weights, 660M backbone), FPN, LSJ 1024, 3x,
# COCO 2017.
# Recipe: the ConvNeXt V2 paper's COCO setting (Appendix A.3; configs/_base_/
# mask_rcnn_cnxv2_fpn_lsj_3x_coco.py): AdamW lr 1e-4, wd 0.05, 32 images per iteration, soft-NMS
# single-scale test. Layer-wise decay 0.9 (num_layers 12) and drop path 0.5 are points of the
# paper's sweeps; which point H used is not published (same choice as L).
# Memory: gradient checkpointing in every backbone block (with_cp=True, recomputes each block in
# the backward pass, about a third more backbone time) and 2 images per GPU on 16 GPUs = 32 per
# iteration, meant to fit 1024x1024 crops on 32-40 GB GPUs; AMP as for B / L. Not measured here
# (no GPU was available). On 8 GPUs of 80 GB, --cfg-options train_dataloader.batch_size=4 keeps
# the total and the lr; for other totals --auto-scale-lr scales the lr linearly from 32 images.
# Target (ConvNeXt V2 paper, Table 6, COCO val2017): V2-H FCMAE 55.7 box AP / 48.9 mask AP (no
# supervised V2-H number is given). Not yet reproduced by this project.
_base_ = ['./_base_/mask_rcnn_cnxv2_fpn_lsj_3x_coco.py']

# Official FCMAE pretrain-only weights (CC-BY-NC 4.0), as the paper initialises COCO models.
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_huge_1k_224_fcmae.pt'  # noqa
model = dict(
    backbone=dict(arch='huge', drop_path_rate=0.5, with_cp=True,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[352, 704, 1408, 2816]))
# 16 GPUs x 2 images = 32 images per iteration.
train_dataloader = dict(batch_size=2)
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9))
