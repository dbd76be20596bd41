# UperNet, ConvNeXt V2-L (FCMAE + IN-1K fine-tuned weights), 512x512, 160k iterations, ADE20K.
# Recipe: the ConvNeXt V2 paper's ADE20K setting (Appendix A.4) with the ConvNeXt V1 values inside
# its sweeps (configs/_base_/upernet_cnxv2_ade20k.py): AdamW lr 1e-4, wd 0.05, stage-wise decay
# 0.9 with num_layers 12, drop path 0.4 (the V1-L ADE20K value), 16 images per iteration. AMP
# (V1-L trained in fp16 too; LayerNorm and GRN compute in fp32 here).
# Target (ConvNeXt V2 paper, Table 7, multi-scale test: tools/test.py ... --tta): V2-L FCMAE
# 53.7 mIoU; V2-L supervised 51.6; V1-L supervised 50.5. See upernet_cnxv2_l_640_ade20k.py for
# 640x640 crops from IN-22K fine-tuned weights. Not yet reproduced by this project.
_base_ = ['./_base_/upernet_cnxv2_ade20k.py']

# Official FCMAE + ImageNet-1K fine-tuned weights (CC-BY-NC 4.0), as the paper initialises ADE20K
# models; any format docs/checkpoints.md lists works here, e.g.
# --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/my_fcmae/backbone.pth
pretrained = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/convnextv2_large_1k_224_ema.pt'  # noqa
model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.4,  # V1 ADE20K configs; inside the paper's sweep
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))  # depth-27 third stage
