"""The speed benchmark runs end to end (tiny settings, for correctness only: nothing is timed
against a threshold here)."""
import importlib.util
import os.path as osp

import pytest

from .conftest import ROOT


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'benchmarks', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_backbone_speed_runs_every_model_mode_and_policy(monkeypatch, capsys):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    backbone_speed = load_script('backbone_speed')
    results = backbone_speed.main(['--cases', 'atto:32', '--batch', '1', '--rounds', '1',
                                   '--warmup', '0', '--device', 'cpu'])
    # Each OpenMP policy ran in its own process, started with the variable set (or unset).
    assert {policy: result['meta']['policy'] for policy, result in results.items()} == {
        'default': 'default', 'PASSIVE': 'PASSIVE'}
    for result in results.values():
        assert [row['mode'] for row in result['rows']] == ['train', 'infer']
        for row in result['rows']:
            assert set(row['medians']) == set(backbone_speed.MODELS)
            assert all(value > 0 for value in row['medians'].values())
    assert 'x timm' in capsys.readouterr().out


def test_export_speed_times_every_runtime_on_one_export_and_compares_outputs(tmp_path, capsys):
    """benchmarks/export_speed.py at 64 px: each case exported once, each runtime timed on it and
    its outputs compared with PyTorch eager (which would catch a runtime running another graph)."""
    export_speed = load_script('export_speed')
    results = export_speed.main(['--cases', 'backbone:1,backbone:2,backbone_static:2,upernet:1',
                                 '--size', '64',
                                 '--rounds', '1', '--warmup', '0', '--threads', '1',
                                 '--out', str(tmp_path / 'speed.json')])
    assert [(r['model'], r['batch']) for r in results['rows']] == [
        ('backbone', 1), ('backbone', 2), ('backbone_static', 2), ('upernet', 1)]
    for row in results['rows']:
        assert set(row['medians']) == set(export_speed.RUNTIMES)  # openvino is in the lock
        assert all(value > 0 for value in row['medians'].values())
        assert all(error < 1e-4 for error in row['max_relative_error'].values()), row
        # Each worker reports its own kernel counters (page faults, system time) per call.
        assert set(row['per_call']) == set(export_speed.RUNTIMES)
        assert all(min(usage.values()) >= 0 for usage in row['per_call'].values()), row
    assert results['threads'] == 1
    assert results['isolation'] == 'a process per runtime'
    assert 'Goal (issue 28)' in capsys.readouterr().out
    assert (tmp_path / 'speed.json').is_file()


def test_export_speed_worker_failure_reaches_the_caller_with_its_traceback(tmp_path):
    """A runtime that cannot start in its worker process fails the benchmark with the worker's
    own error, instead of hanging or timing nothing."""
    import numpy as np
    export_speed = load_script('export_speed')
    missing = tmp_path / 'missing.onnx'
    spec = dict(kind='backbone', onnx_file=str(missing), threads=1,
                pixels=np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(RuntimeError, match='benchmark worker failed') as error:
        export_speed.WorkerProcess('onnxruntime', spec)
    assert 'missing.onnx' in str(error.value)


def test_onnxruntime_profile_shares_add_up_and_name_the_graphs_operators(capsys):
    """benchmarks/onnxruntime_profile.py at 64 px: every operator type ONNX Runtime timed, with
    shares summing to one; the MatMuls of the pointwise layers and GRN's ReduceSum among them
    (deploy/grn_export.py writes GRN's norm as sqrt(ReduceSum(x * x)), not ReduceL2)."""
    profile = load_script('onnxruntime_profile')
    result = profile.main(['--batch', '1', '--size', '64', '--runs', '1', '--threads', '1'])
    assert sum(result['shares'].values()) == pytest.approx(1.0)
    assert {'MatMul', 'ReduceSum', 'Conv', 'LayerNormalization'} <= set(result['shares'])
    assert 'ReduceL2' not in result['shares']
    top = result['top_nodes']
    assert len(top) == 8 and [n['ms'] for n in top] == sorted((n['ms'] for n in top), reverse=True)
    assert {n['op'] for n in top} <= set(result['shares'])
    assert sum(n['share'] for n in top) <= 1.0 + 1e-9
    assert set(result['medians']) == {'all', 'extended'}
    assert 'share of kernel time by operator' in capsys.readouterr().out


def test_export_speed_in_process_keeps_the_first_method():
    """--in-process times every runtime in the benchmark's own process: outputs still checked
    against PyTorch eager, and no per-worker counters (there are no workers)."""
    export_speed = load_script('export_speed')
    results = export_speed.main(['--cases', 'backbone:1', '--size', '64', '--rounds', '1',
                                 '--warmup', '0', '--threads', '1', '--runtimes',
                                 'pytorch,onnxruntime', '--in-process'])
    assert results['isolation'] == 'one process'
    (row,) = results['rows']
    assert set(row['medians']) == {'pytorch', 'onnxruntime'}
    assert row['max_relative_error']['onnxruntime'] < 1e-4
    assert row['per_call'] == {}
