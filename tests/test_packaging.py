"""The built wheel installs into an existing environment (the project's own) without replacing
or adding anything: what the package declares is what that environment already holds."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pip(*args: str) -> str:
    proc = subprocess.run([sys.executable, '-m', 'pip', '--disable-pip-version-check', *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_wheel_plans_to_install_nothing_but_itself(tmp_path):
    # Build from a copy with its own version, so that the editable install of this checkout
    # does not already satisfy the request and pip has to plan the wheel and its requirements.
    source = tmp_path / 'source'
    source.mkdir()
    for name in ('setup.py', 'README.md'):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / 'cnxv2_dense', source / 'cnxv2_dense',
                    ignore=shutil.ignore_patterns('__pycache__'))
    version_file = source / 'cnxv2_dense' / 'version.py'
    version = re.search(r"'(.+)'", version_file.read_text()).group(1) + '+wheeltest'
    version_file.write_text(f"__version__ = '{version}'\n")

    wheels = tmp_path / 'wheels'
    pip('wheel', '--no-deps', '--no-build-isolation', '--no-index', '-w', str(wheels),
        str(source))
    assert [p.name for p in wheels.iterdir()] == [f'cnxv2_dense-{version}-py3-none-any.whl']

    report = tmp_path / 'report.json'
    pip('install', '--dry-run', '--report', str(report), '--no-index', '--find-links',
        str(wheels), f'cnxv2_dense[all,tests]=={version}')
    install = json.loads(report.read_text())['install']
    assert [item['metadata']['name'] for item in install] == ['cnxv2_dense']

    requires = install[0]['metadata']['requires_dist']
    pinned = [r for r in requires if '==' in r.split(';')[0]]  # `extra == "det"` is a marker
    assert not pinned, pinned  # ranges, never pins
    unconditional = {re.split(r'[<>=!~ ;\[]', r, 1)[0] for r in requires if 'extra ==' not in r}
    assert {'torch', 'mmcv', 'mmengine', 'numpy'} <= unconditional
    assert not unconditional & {'mmdet', 'mmsegmentation', 'timm', 'pytest'}  # extras only
    assert any(r.startswith('mmdet') and 'extra == "det"' in r for r in requires)
    assert any(r.startswith('mmsegmentation') and 'extra == "seg"' in r for r in requires)
