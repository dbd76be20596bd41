"""Checkpoint files a config names, checked before anything is built."""
from mmengine.config import Config

from cnxv2_dense.utils.config_check import missing_checkpoint_files


def test_missing_checkpoint_files_are_named(tmp_path):
    present = tmp_path / 'backbone.pth'
    present.write_bytes(b'')
    cfg = Config(dict(
        model=dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=str(present))),
                   neck=dict(init_cfg=[dict(type='Xavier'),
                                       dict(type='Pretrained', checkpoint='gone/neck.pth')]),
                   head=dict(init_cfg=dict(type='Pretrained', checkpoint='https://x/y.pth'))),
        load_from='work_dirs/old/epoch_3.pth'))
    assert missing_checkpoint_files(cfg) == [
        'model.neck.init_cfg[1].checkpoint: gone/neck.pth does not exist; give the path of the '
        'checkpoint (or a URL)',
        'load_from: work_dirs/old/epoch_3.pth does not exist; give the path of the checkpoint '
        '(or a URL)']
