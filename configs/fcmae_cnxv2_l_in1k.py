# FCMAE pretraining of ConvNeXt V2-Large (198M params); fine-tuned IN-1K top-1 85.8 in the paper.
# The recipe of the official convnextv2_large_1k_224_fcmae.pt weights (800 epochs, 224 px, mask
# ratio 0.6, norm_pix_loss, batch 4096 = lr 1.5e-4 x 4096 / 256 with auto_scale_lr);
# see the base file.
#   python tools/train.py configs/fcmae_cnxv2_l_in1k.py
_base_ = ['./_base_/fcmae_default.py']

model = dict(arch='large')
