"""tools/setup_env.sh refuses to start a first install on a nearly full disk."""
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_env_refuses_a_first_install_without_disk_space(tmp_path):
    # A copy of what the script reads, with no .venv: a first install.
    (tmp_path / 'tools').mkdir()
    shutil.copy(REPO / 'tools' / 'setup_env.sh', tmp_path / 'tools')
    shutil.copytree(REPO / 'requirements', tmp_path / 'requirements')
    shutil.copy(REPO / 'setup.py', tmp_path)
    result = subprocess.run(
        ['bash', str(tmp_path / 'tools' / 'setup_env.sh')], capture_output=True, text=True,
        env={'PATH': os.environ['PATH'], 'HOME': str(tmp_path), 'TMPDIR': str(tmp_path),
             'CNXV2_MIN_FREE_GB': '1000000'}, timeout=60)
    assert result.returncode == 1
    assert 'GB free on the disk holding' in result.stderr
    assert 'needs about 1000000 GB' in result.stderr
    # It stopped before creating anything.
    assert not (tmp_path / '.venv').exists()
