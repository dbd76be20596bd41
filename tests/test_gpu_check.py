"""benchmarks/gpu_check.py, the one command for a GPU machine: its CPU run (``--device cpu
--quick``) goes through every check and names why it skips what needs CUDA; its offline recipe
(a wheelhouse of mmengine / mmcv-lite on top of a bare PyTorch environment) runs; on a machine
with CUDA, its correctness checks pass there."""
import importlib.metadata
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Set

import pytest
import torch

from .conftest import ROOT

SCRIPT = osp.join(ROOT, 'benchmarks', 'gpu_check.py')
WHEELHOUSE = osp.join(ROOT, 'build', 'wheelhouse')


def load_gpu_check():
    spec = importlib.util.spec_from_file_location('gpu_check_under_test', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


def run_script(args, python=sys.executable, timeout=600) -> subprocess.CompletedProcess:
    # One thread: on a shared CPU, OpenMP's spinning threads slow every step several times.
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    env.pop('PYTHONPATH', None)
    return subprocess.run([python, SCRIPT] + list(args), cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


def canonical(name: str) -> str:
    from packaging.utils import canonicalize_name
    return str(canonicalize_name(name))


def requirement_closure(names: Iterable[str]) -> Set[str]:
    """The installed distributions among ``names`` and, recursively, what they require
    (extras left out). A name not installed here stands for its SAME_PACKAGE twin if that is."""
    from packaging.requirements import Requirement
    twins = {canonical(v): canonical(k) for k, v in gpu_check.SAME_PACKAGE.items()}
    seen: Set[str] = set()
    todo = [canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if name in twins:
                todo.append(twins[name])
            continue
        seen.add(name)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({'extra': ''}):
                todo.append(canonical(requirement.name))
    return seen


# ----------------------------------------------------------------------------- units
def test_interleave_rotates_the_order_and_drops_the_warmup():
    calls = []

    def step(name):
        def run():
            calls.append(name)
            return float(len(calls))
        return run
    times = gpu_check.interleave({'a': step('a'), 'b': step('b'), 'c': step('c')},
                                 rounds=2, warmup=1)
    assert calls == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b']
    # The warm-up round (calls 1-3) is not in the times; each value is its call's position.
    assert times == {'a': [6., 8.], 'b': [4., 9.], 'c': [5., 7.]}


def test_errors_are_scaled_and_non_finite_results_fail():
    reference = torch.tensor([2., -4.])
    assert gpu_check.scaled_error(torch.tensor([2., -3.]), reference) == pytest.approx(0.25)
    assert gpu_check.relative_l2(torch.tensor([2., -3.]), reference) == pytest.approx(
        1 / 20 ** .5)
    assert gpu_check.scaled_error(torch.tensor([float('inf'), -4.]), reference) == float('inf')
    assert gpu_check.relative_l2(torch.tensor([float('nan'), -4.]), reference) == float('inf')


def test_wheelhouse_pins_mmengine_and_mmcv_to_the_lock():
    lock = Path(ROOT, 'requirements', 'runtime.txt').read_text()
    specs = gpu_check.wheelhouse_requirements()
    assert f'mmengine=={gpu_check.lock_version("mmengine")}' in specs
    assert f'mmcv-lite=={gpu_check.lock_version("mmcv")}' in specs
    assert 'mmengine==0.10.' in lock and f'mmcv=={gpu_check.lock_version("mmcv")}' in lock
    assert [s.split('==')[0] for s in specs] == list(gpu_check.WHEELHOUSE_PACKAGES)


def test_plan_names_are_unique_and_cover_both_toolboxes_and_every_speed_case():
    names = [check.name for check in gpu_check.plan(gpu_check.FULL)]
    assert len(names) == len(set(names))
    for expected in ('timm_parity_fp32', 'backbone_autocast_float16_large',
                     'backbone_autocast_bfloat16_large', 'grn_fused_float16',
                     'grn_fused_bfloat16', 'fcmae_paths_agree', 'fcmae_speedup_amp',
                     'memory_with_cp_fp32', 'mask_rcnn_steps', 'upernet_steps',
                     'speed_tiny224_b32_train_amp', 'speed_base224_b16_infer_fp32_cudnn_benchmark',
                     'layout_verdict'):
        assert expected in names


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the error shown without CUDA')
def test_cuda_device_without_cuda_says_how_to_run_on_cpu(tmp_path):
    with pytest.raises(SystemExit, match='--device cpu'):
        gpu_check.main(['--out', str(tmp_path)])
    assert not (tmp_path / 'gpu_check.json').exists()


def test_out_is_required():
    with pytest.raises(SystemExit) as raised:
        gpu_check.main(['--device', 'cpu', '--quick'])
    assert raised.value.code == 2


# ----------------------------------------------------------------------------- CPU run
def expected_skip(name: str) -> str:
    """'' for a check that must pass / measure on this CPU machine, else a word its reason
    must contain."""
    if name.startswith('memory_with_cp') or name.endswith('_cudnn_benchmark'):
        return 'CUDA'
    scope = {'mask_rcnn_steps': 'mmdet', 'upernet_steps': 'mmseg'}.get(name)
    if scope and gpu_check.toolbox_unavailable(scope, torch.device('cpu')):
        return scope
    if name.startswith(('backbone_autocast_', 'grn_fused_')):
        dtype = name.split('_')[2]
        if dtype != 'float32' and gpu_check.autocast_supported('cpu', dtype):
            return 'autocast'
    return ''


def assert_report_complete(report: dict, out: Path) -> None:
    names = [check.name for check in gpu_check.plan(gpu_check.QUICK)]
    assert [r['name'] for r in report['checks']] == names
    for key in ('torch', 'timm', 'cuda', 'driver', 'device_name', 'mmengine', 'mmcv'):
        assert key in report['environment']
    assert report['environment']['torch'] == torch.__version__
    table = (out / 'gpu_check.md').read_text()
    for r in report['checks']:
        assert r['status'] in ('pass', 'measured', 'skipped'), (r['name'], r['summary'],
                                                               r['details'].get('traceback'))
        assert f'| {r["name"]} | {r["status"]} |' in table
        assert r['summary']  # a figure, or the reason for a skip


@pytest.mark.slow
def test_quick_cpu_run_goes_through_every_check(tmp_path):
    proc = run_script(['--device', 'cpu', '--quick', '--out', str(tmp_path)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert_report_complete(report, tmp_path)
    for r in report['checks']:
        why = expected_skip(r['name'])
        if why:
            assert r['status'] == 'skipped' and why in r['summary'], r
        elif r['kind'] == 'correctness':
            assert r['status'] == 'pass', r
        else:
            assert r['status'] == 'measured', r
            ratio = r['details'].get('ratio', {})
            for value in (ratio.values() if isinstance(ratio, dict) else [ratio]):
                assert 0 < value < float('inf'), r
    by_name = {r['name']: r for r in report['checks']}
    # The large-activation input is the float16 overflow case it is meant to be.
    assert by_name['backbone_autocast_float16_large']['details']['exceeds_float16'] is True
    speed = by_name['speed_atto64_b2_train_fp32']['details']
    assert set(speed['median_ms']) == {'timm', 'ours_channels_last', 'ours_nchw'}
    assert all(len(v) == gpu_check.QUICK.rounds for v in speed['times_ms'].values())
    assert report['failed'] == []


# ----------------------------------------------------------------------------- offline recipe
def machine_like_python(tmp_path: Path, also: Iterable[str] = ()) -> str:
    """A venv whose only packages are this environment's MACHINE_PACKAGES, what they require
    and the distributions ``also`` (linked, not copied): a bare PyTorch machine without the
    OpenMMLab stack, or with ``also`` standing in for the wheelhouse."""
    site = tmp_path / 'machine_site'
    site.mkdir()
    names = requirement_closure(gpu_check.MACHINE_PACKAGES)
    for name in also:
        try:
            importlib.metadata.distribution(name)
            names.add(canonical(name))
        except importlib.metadata.PackageNotFoundError:
            pass  # e.g. tomli, which Python >= 3.11 does not need
    for name in sorted(names):
        dist = importlib.metadata.distribution(name)
        for top in sorted({f.parts[0] for f in dist.files or [] if '..' not in f.parts}):
            target = Path(dist.locate_file(top))
            if target.exists() and not (site / top).exists() and not top.endswith('.pth'):
                (site / top).symlink_to(target)
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    venv_site = subprocess.run([str(python), '-c', 'import site; print(site.getsitepackages()[0])'],
                               text=True, capture_output=True, check=True).stdout.strip()
    Path(venv_site, 'machine.pth').write_text(str(site) + '\n')
    return str(python)


@pytest.mark.slow
def test_cnxv2_dense_needs_nothing_beyond_the_machine_and_the_wheelhouse(tmp_path):
    """With only a PyTorch image's distributions and the wheelhouse's (this environment's
    installed mmengine / mmcv and the rest standing in for the wheels), ``import cnxv2_dense``
    and an FCMAE (which builds mmengine's data preprocessor) work: the wheelhouse lacks nothing
    they need. Runs without the network; the offline-recipe test below uses the real wheels."""
    stand_ins = [{v: k for k, v in gpu_check.SAME_PACKAGE.items()}.get(d, d)
                 for d in gpu_check.WHEELHOUSE_PACKAGES]
    python = machine_like_python(tmp_path, also=stand_ins)
    code = ('import timm, cnxv2_dense\n'
            'from cnxv2_dense.models import FCMAE\n'
            'FCMAE(arch="atto", decoder_dim=8)\n'
            'import importlib.util as u\n'
            'print([m for m in ("mmdet", "mmseg") if u.find_spec(m)])\n')
    proc = subprocess.run([python, '-c', code], cwd=ROOT, text=True, capture_output=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == '[]'  # the toolboxes are really absent


@pytest.fixture(scope='module')
def wheelhouse(tmp_path_factory) -> str:
    """build/wheelhouse when it was built; otherwise built here by the recipe's own script (it
    downloads about 2 MB from the package index the environment was installed from)."""
    if os.path.isdir(WHEELHOUSE):
        return WHEELHOUSE
    folder = tmp_path_factory.mktemp('wheelhouse')
    proc = subprocess.run(['bash', osp.join(ROOT, 'benchmarks', 'make_offline_wheelhouse.sh'),
                           str(folder)], text=True, capture_output=True, timeout=600,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(folder)


@pytest.mark.slow
def test_offline_recipe_runs_the_quick_check_on_a_bare_pytorch_environment(tmp_path, wheelhouse):
    python = machine_like_python(tmp_path)
    probe = subprocess.run([python, '-c', 'import torch, timm, cv2\nimport mmengine'],
                           text=True, capture_output=True)
    assert "No module named 'mmengine'" in probe.stderr  # torch and timm there, OpenMMLab not

    without = run_script(['--device', 'cpu', '--quick', '--out', str(tmp_path / 'no')],
                         python=python)
    assert without.returncode != 0 and 'make_offline_wheelhouse.sh' in without.stderr

    out = tmp_path / 'out'
    proc = run_script(['--device', 'cpu', '--quick', '--out', str(out),
                       '--wheelhouse', wheelhouse, '--site', str(tmp_path / 'site')],
                      python=python)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / 'gpu_check.json').read_text())
    assert_report_complete(report, out)
    assert report['notes'] and 'installed' in report['notes'][0]
    assert 'mmcv-lite' in report['environment']['mmcv']
    by_name = {r['name']: r for r in report['checks']}
    for name, scope in (('mask_rcnn_steps', 'mmdet'), ('upernet_steps', 'mmseg')):
        assert by_name[name]['status'] == 'skipped'
        assert f'{scope} not importable' in by_name[name]['summary']
    for r in report['checks']:
        if r['kind'] == 'correctness' and r['name'] not in ('mask_rcnn_steps', 'upernet_steps'):
            assert r['status'] == 'pass', r


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason='the CUDA paths need a GPU')
def test_correctness_checks_pass_on_cuda(tmp_path):
    proc = run_script(['--quick', '--out', str(tmp_path), '--only',
                       'timm_parity,backbone_autocast,grn_fused,fcmae_paths,with_cp'])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert report['environment']['device'].startswith('cuda')
    statuses = {r['name']: r['status'] for r in report['checks']}
    assert len(statuses) == 10 and set(statuses.values()) <= {'pass', 'skipped'}
    assert statuses['timm_parity_fp32'] == statuses['grn_fused_float16'] == 'pass'
