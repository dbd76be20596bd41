"""Supported version ranges: declared once, checked at import, mmdet / mmseg optional.

Missing packages and out-of-range versions are simulated by monkeypatching ``sys.modules`` and
``__version__`` attributes, never by installing anything.
"""
import re
import subprocess
import sys
from pathlib import Path

import mmcv
import mmengine
import pytest
import torch

from cnxv2_dense.dependencies import (CHECKED_AT_IMPORT, EXTRAS, REQUIRED, DependencyError,
                                      check_installed_versions, check_version, is_supported,
                                      require_toolbox)
from cnxv2_dense.utils import load_config

REPO = Path(__file__).resolve().parents[1]
LOCK_LINE = re.compile(r'^([A-Za-z0-9_.-]+)\s*(===?\s*([^\s;#]+))?')


def locked_versions():
    """``{distribution: exact version or None}`` from the lock, requirements/*.txt."""
    locked = {}
    for path in sorted((REPO / 'requirements').glob('*.txt')):
        for line in path.read_text().splitlines():
            match = LOCK_LINE.match(line.split('#')[0].strip())
            if match:
                locked[match.group(1).lower()] = match.group(3)
    return locked


def declared():
    table = dict(REQUIRED)
    for extra in EXTRAS.values():
        table.update(extra)
    return table


def test_declared_ranges_contain_the_tested_lock():
    locked = locked_versions()
    for dist, spec in declared().items():
        assert '==' not in spec, f'{dist}{spec}: a library declares ranges, not pins'
        assert dist in locked, f'{dist} is declared but not in the tested lock (requirements/)'
        if locked[dist] is not None:
            assert is_supported(locked[dist], spec), f'lock {dist}=={locked[dist]} not in {spec}'


@pytest.mark.parametrize('version, spec, inside', [
    ('2.1.0', '>=2.1.0', True),
    ('2.13.0+cpu', '>=2.1.0', True),  # local builds count as their release
    ('2.2.0a0+81ea7a4', '>=2.1.0', True),  # NVIDIA containers' torch
    ('2.0.1', '>=2.1.0', False),
    ('2.1.0', '>=2.1.0,<2.2.0', True),
    ('2.2.0', '>=2.1.0,<2.2.0', False),
    ('2.2.0rc1', '>=2.1.0,<2.2.0', False),
    ('2.0.0rc4', '>=2.1.0,<2.2.0', False),
])
def test_is_supported(version, spec, inside):
    assert is_supported(version, spec) is inside


@pytest.mark.parametrize('module, version, spec', [
    (torch, '2.0.1', REQUIRED['torch']),
    (mmcv, '2.2.0', REQUIRED['mmcv']),
    (mmengine, '0.9.1', REQUIRED['mmengine']),
])
def test_out_of_range_version_fails_with_version_and_range(monkeypatch, module, version, spec):
    monkeypatch.setattr(module, '__version__', version)
    with pytest.raises(DependencyError) as info:
        check_installed_versions()
    message = str(info.value)
    assert f'{module.__name__} {version} is installed' in message
    assert f'supports {module.__name__}{spec}' in message


def test_installed_versions_pass():
    check_installed_versions()  # the project's own environment is inside every range


def test_missing_mmcv_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmcv', None)  # `import mmcv` now raises ImportError
    with pytest.raises(DependencyError, match=r'needs mmcv>=2\.1\.0,<2\.2\.0, which is not '
                       r'installed.*mim install "mmcv>=2\.1\.0,<2\.2\.0"'):
        check_installed_versions()


def test_import_runs_the_check_first():
    # A fresh interpreter with torch reporting an unsupported version: the import itself fails.
    code = 'import torch; torch.__version__ = "2.0.1"; import cnxv2_dense'
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert 'cnxv2_dense.dependencies.DependencyError' in proc.stderr
    assert 'cnxv2_dense supports torch>=2.1.0, but torch 2.0.1 is installed' in proc.stderr


def test_import_needs_neither_mmdet_nor_mmseg():
    code = '\n'.join([
        'import sys',
        "sys.modules['mmdet'] = None; sys.modules['mmseg'] = None  # as if not installed",
        'import torch, cnxv2_dense',
        "model = cnxv2_dense.ConvNeXtV2(arch=dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64]))",
        'print([tuple(o.shape) for o in model(torch.zeros(1, 3, 32, 32))])',
    ])
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == '[(1, 8, 8, 8), (1, 16, 4, 4), (1, 32, 2, 2), (1, 64, 1, 1)]'


def test_package_imports_no_toolbox():
    code = ('import sys, cnxv2_dense; '
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mmdet', 'mmseg'}))")
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == '[]'


def test_seg_config_without_mmseg_says_what_to_install(monkeypatch):
    import tools.train as train
    monkeypatch.setitem(sys.modules, 'mmseg', None)
    with pytest.raises(DependencyError) as info:
        train.main([str(REPO / 'configs' / 'upernet_cnxv2_demo_shapes.py')])
    message = str(info.value)
    assert "needs mmsegmentation (default_scope='mmseg'), which is not installed" in message
    assert 'pip install "cnxv2_dense[seg]"' in message


def test_det_config_without_mmdet_says_what_to_install(monkeypatch, tmp_path):
    import tools.infer as infer
    monkeypatch.setitem(sys.modules, 'mmdet', None)
    with pytest.raises(DependencyError, match=r'needs mmdet .*pip install "cnxv2_dense\[det\]"'):
        infer.build_predictor(str(REPO / 'configs' / 'mask_rcnn_cnxv2_demo_shapes.py'),
                              str(tmp_path / 'never_read.pth'), 'cpu')


def test_config_inheriting_from_a_missing_toolbox(monkeypatch):
    # mmengine resolves `mmseg::` bases by distribution; make it find mmsegmentation missing.
    import mmengine.config.config as mmengine_config
    real = mmengine_config.is_installed
    monkeypatch.setattr(mmengine_config, 'is_installed',
                        lambda package: package != 'mmsegmentation' and real(package))
    config = str(REPO / 'configs' / 'upernet_cnxv2_demo_shapes.py')
    with pytest.raises(DependencyError) as info:
        load_config(config)
    assert f'{config} inherits from mmseg:: configs' in str(info.value)
    assert 'pip install "cnxv2_dense[seg]"' in str(info.value)


def test_out_of_range_toolbox(monkeypatch):
    import mmseg
    monkeypatch.setattr(mmseg, '__version__', '1.1.0')
    with pytest.raises(DependencyError, match=r'supports mmsegmentation>=1\.2\.2,<2\.0\.0, but '
                       r'mmsegmentation 1\.1\.0 is installed.*cnxv2_dense\[seg\]'):
        require_toolbox('mmseg')
    require_toolbox('mmdet')  # the other toolbox is unaffected
    require_toolbox('mmengine')  # FCMAE configs need neither
    require_toolbox(None)


def test_check_version_names_the_extra():
    with pytest.raises(DependencyError, match=r'mmdet 2\.28\.2 is installed.*cnxv2_dense\[det\]'):
        check_version('mmdet', '2.28.2', 'det')
    assert set(CHECKED_AT_IMPORT.values()) <= set(REQUIRED)
