"""Checkpoint files a config names, and files a command line names, checked before anything is
built."""
from mmengine.config import Config

from cnxv2_dense.checks import missing_checkpoint_files, missing_file


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


def test_a_missing_file_of_the_command_line_is_named(tmp_path):
    present = tmp_path / 'epoch_1.pth'
    present.write_bytes(b'')
    gone = tmp_path / 'gone.pth'
    assert missing_file(str(present), 'checkpoint', 'give one') == []
    assert missing_file(str(gone), 'checkpoint', 'give one') == [
        f'{gone}: the checkpoint does not exist; give one']
    assert missing_file('https://x/y.pth', 'checkpoint', 'give one') == []  # its loader's
    assert missing_file('https://x/y.py', 'config', 'give one', urls=False) == [
        'https://x/y.py: the config does not exist; give one']
    assert missing_file(str(tmp_path), 'config', 'give one') == [  # a folder is no file
        f'{tmp_path}: the config does not exist; give one']
