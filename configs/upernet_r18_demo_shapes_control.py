# Control experiment for the segmentation demo, not a ConvNeXt V2 model: the demo config
# (configs/upernet_cnxv2_demo_shapes.py: data, UperNet head, losses, schedule) with mmseg's
# ResNet-18 (ResNetV1c, BN) from scratch as the backbone. It separates what the from-scratch
# ConvNeXt V2 backbone reaches on the shapes data from what the rest of the pipeline allows;
# docs/demo_experiments.md quotes both. The demo's AdamW and gradient clipping, through
# mmengine's default constructor: the layer-decay constructor needs ConvNeXt's layer ids.
_base_ = ['./upernet_cnxv2_demo_shapes.py']

resnet_channels = [64, 128, 256, 512]
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNetV1c',
        depth=18,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True),
        style='pytorch',
        init_cfg=None),
    decode_head=dict(in_channels=resnet_channels),
    auxiliary_head=dict(in_channels=resnet_channels[2]))
optim_wrapper = dict(constructor='DefaultOptimWrapperConstructor', paramwise_cfg=None)
