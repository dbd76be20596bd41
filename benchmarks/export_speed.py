"""Latency of the exported ONNX models in ONNX Runtime (and OpenVINO) against PyTorch eager.

    python benchmarks/export_speed.py                 # the figures of docs/speed.md (issue 28)
    python benchmarks/export_speed.py --cases backbone:1 --size 64 --rounds 1 --warmup 0  # smoke

Cases (``--cases``, comma-separated ``model:batch``):

* ``backbone:1``, ``backbone:8``: ConvNeXt V2-tiny alone (its four stage outputs) at
  ``--backbone-size`` (224) px;
* ``backbone_static:8``: the same backbone exported with a static batch (``tools/export.py
  --batch 8``) instead of ``--dynamic``, to see whether a fixed shape lets ONNX Runtime plan a
  faster graph;
* ``upernet:1``: the UperNet-T segmentor of ``configs/upernet_cnxv2_t_ade20k.py`` (150 classes,
  auxiliary head left out as at test time) at ``--segmentor-size`` (512) px, per-pixel scores and
  labels at the input size.

Runtimes, all on the same weights, the same input (RGB pixels 0-255, normalised inside) and the
same number of CPU threads (``--threads``, default torch's):

* ``pytorch``: the model as mmseg runs it at test time, eager, ``torch.no_grad``: normalise, the
  backbone as a config builds it (default layout, fused GRN), for UperNet ``extract_feat``,
  ``decode_head`` and the bilinear resize to the input size, then argmax;
* ``onnxruntime``: the file ``tools/export.py`` writes (fp32, opset 17; the backbone with
  ``--dynamic`` so one graph takes both batches), CPU provider, every graph optimisation on;
* ``openvino``: the same ``.onnx`` file read by OpenVINO's CPU plugin, float32 inference precision
  (its default on CPUs with bf16 / AMX would be lower precision), latency hint. Skipped with a
  printed reason if openvino is not installed (it is in requirements/deploy.txt).

The weights are random (the speed does not depend on them); the export tool's own spot check runs
on each export, and the outputs of each runtime are compared with PyTorch's here too. Each runtime
runs in its own worker process (``--in-process``: all in this one, the first method, where they
share one heap and the CPU; docs/speed.md), and within a case the runtimes run interleaved, round by
round, in a rotating order, one at a time, so machine noise hits all alike; the first
``--warmup`` rounds are dropped, the median of the rest is reported with the ratio
``pytorch time / runtime time`` (> 1: faster than PyTorch eager).
"""
import argparse
import json
import os.path as osp
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

ROOT = Path(__file__).resolve().parents[1]
SEGMENTOR_CONFIG = ROOT / 'configs' / 'upernet_cnxv2_t_ade20k.py'
RUNTIMES = ('pytorch', 'onnxruntime', 'openvino')
KINDS = ('backbone', 'backbone_static', 'upernet')
GOAL = 1.3  # issue 28: ONNX Runtime at least 1.3x PyTorch eager on the backbone and segmentor


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cases', default='backbone:1,backbone:8,upernet:1',
                        help='comma-separated model:batch, model of backbone, upernet')
    parser.add_argument('--backbone-size', type=int, default=224)
    parser.add_argument('--segmentor-size', type=int, default=512)
    parser.add_argument('--size', type=int, help='one size for every case (smoke runs)')
    parser.add_argument('--runtimes', default=','.join(RUNTIMES),
                        help=f'comma-separated, of {", ".join(RUNTIMES)} (pytorch always runs)')
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument('--out', help='also write the results here as JSON')
    parser.add_argument('--in-process', action='store_true',
                        help='time every runtime in this one process (the first method, one shared '
                             'heap; docs/speed.md) instead of one process each')
    parser.add_argument('--worker-fd', type=int, help=argparse.SUPPRESS)  # WorkerProcess
    args = parser.parse_args(argv)
    cases = []
    for case in args.cases.split(','):
        model, _, batch = case.strip().partition(':')
        if model not in KINDS or not batch.isdigit() or int(batch) < 1:
            parser.error(f'--cases: {case!r} is not MODEL:N with MODEL of {", ".join(KINDS)}')
        cases.append((model, int(batch)))
    args.cases = cases
    args.runtimes = [r.strip() for r in args.runtimes.split(',') if r.strip()]
    unknown = set(args.runtimes) - set(RUNTIMES)
    if unknown:
        parser.error(f'--runtimes: {", ".join(sorted(unknown))} unknown; of {", ".join(RUNTIMES)}')
    if 'pytorch' not in args.runtimes:
        args.runtimes.insert(0, 'pytorch')
    if args.rounds < 1 or args.warmup < 0:
        parser.error('--rounds must be at least 1 and --warmup at least 0')
    return args


# ----------------------------------------------------------------------------- models
def cpu_config(folder: Path) -> Path:
    """The UperNet-T config with BN for SyncBN (one CPU process) and no pretrained download."""
    config = folder / 'upernet_t_cpu.py'
    config.write_text(f"""_base_ = [{str(SEGMENTOR_CONFIG)!r}]
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(backbone=dict(init_cfg=None), decode_head=dict(norm_cfg=norm_cfg),
             auxiliary_head=dict(norm_cfg=norm_cfg))
""")
    return config


def random_segmentor(folder: Path):
    """``(config, cfg, model, checkpoint)``: the CPU UperNet-T config, its model with seeded
    random weights (the speed does not depend on them) and those weights saved as a checkpoint."""
    import torch

    from cnxv2_dense.deploy.model_loading import build_model
    from cnxv2_dense.utils import load_config
    config = cpu_config(folder)
    cfg = load_config(str(config))
    torch.manual_seed(0)
    model = build_model(cfg)
    checkpoint = folder / 'random.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    return config, cfg, model, checkpoint


def eager_forward(model, kind: str, mean, std) -> Callable:
    """What mmseg computes at test time for one whole image, from 0-255 RGB pixels."""
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    align_corners = bool(model.decode_head.align_corners)

    def forward(pixels):
        x = (pixels - mean) / std
        if kind.startswith('backbone'):
            return model.backbone(x)
        logits = model.decode_head(model.extract_feat(x))
        scores = F.interpolate(logits, size=pixels.shape[2:], mode='bilinear',
                               align_corners=align_corners)
        return scores, scores.argmax(dim=1)
    return forward


def pytorch_runner(spec: dict) -> Callable:
    """Eager PyTorch on the checkpoint's weights (the model ``random_segmentor`` saved)."""
    import torch

    from cnxv2_dense.deploy.metadata import preprocessing
    from cnxv2_dense.deploy.model_loading import build_model, load_exactly, read_trained_checkpoint
    from cnxv2_dense.utils import load_config
    torch.set_num_threads(spec['threads'])
    cfg = load_config(spec['config'])
    model = load_exactly(build_model(cfg), read_trained_checkpoint(spec['checkpoint'])[0])
    pre = preprocessing(cfg)
    forward = eager_forward(model, spec['kind'], pre['mean'], pre['std'])

    def run(pixels):
        with torch.no_grad():
            out = forward(torch.from_numpy(pixels))
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
    return run


def onnxruntime_runner(spec: dict) -> Callable:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec['threads']
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(spec['onnx_file'], options,
                                   providers=['CPUExecutionProvider'])
    return lambda pixels: session.run(None, {'pixels': pixels})


def openvino_runner(spec: dict) -> Callable:
    import openvino as ov
    core = ov.Core()
    compiled = core.compile_model(core.read_model(spec['onnx_file']), 'CPU', {
        'INFERENCE_NUM_THREADS': spec['threads'], 'INFERENCE_PRECISION_HINT': 'f32',
        'PERFORMANCE_HINT': 'LATENCY'})
    request = compiled.create_infer_request()

    def run(pixels):
        request.infer({0: pixels})
        return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]
    return run


RUNNERS = dict(pytorch=pytorch_runner, onnxruntime=onnxruntime_runner, openvino=openvino_runner)


class InProcess:
    """A runtime in this process: ``run()`` (seconds per call) and ``outputs()``."""

    def __init__(self, runtime: str, spec: dict):
        self._call = RUNNERS[runtime](spec)
        self._pixels = spec['pixels']

    def run(self) -> float:
        return seconds(self._call, self._pixels)

    def outputs(self) -> list:
        return [np.asarray(o) for o in self._call(self._pixels)]

    def usage(self) -> Optional[Tuple[int, float]]:
        """This runtime's own (page faults, system CPU seconds) so far; None here (shared)."""
        return None

    def close(self) -> None:
        self._call = None


class WorkerProcess:
    """A runtime in its own Python process, driven over a socket: same ``run()`` / ``outputs()``.

    NOTE: in one process the runtimes share the heap: PyTorch eager frees its large temporaries
    after each call and takes them again from the heap the other runtimes used in between (the
    runs in docs/speed.md did not show a consistent effect either way). Each runtime in its own process has its allocator and thread pool
    to itself, as in a deployment; the others wait on their socket meanwhile.
    """

    def __init__(self, runtime: str, spec: dict):
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, __file__, '--worker-fd', str(theirs.fileno())],
            pass_fds=[theirs.fileno()])
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(dict(spec, runtime=runtime))
        self._reply()  # built and ready

    def _reply(self):
        try:
            status, value = self._conn.recv()
        except EOFError:  # died without a word (killed, crashed)
            status, value = 'error', f'exited with code {self._process.wait()}'
        if status == 'error':  # the worker has stopped
            self.close()
            raise RuntimeError(f'benchmark worker failed:\n{value}')
        return value

    def run(self) -> float:
        self._conn.send('run')
        return self._reply()

    def outputs(self) -> list:
        self._conn.send('outputs')
        return self._reply()

    def usage(self) -> Tuple[int, float]:
        """The worker's (page faults, system CPU seconds) so far."""
        self._conn.send('usage')
        return self._reply()

    def close(self) -> None:
        if not self._conn.closed:
            try:
                self._conn.send('stop')
            except OSError:  # the worker has gone already
                pass
            self._conn.close()
        self._process.wait()


def serve(fd: int) -> None:
    """The worker side of :class:`WorkerProcess`."""
    conn = Connection(fd)
    try:
        spec = conn.recv()
        runtime = InProcess(spec['runtime'], spec)
        conn.send(('ok', None))
        for message in iter(conn.recv, 'stop'):
            if message == 'usage':
                own = resource.getrusage(resource.RUSAGE_SELF)
                conn.send(('ok', (own.ru_minflt + own.ru_majflt, own.ru_stime)))
            else:
                conn.send(('ok', runtime.run() if message == 'run' else runtime.outputs()))
    except Exception:  # the parent raises it with this traceback
        conn.send(('error', traceback.format_exc()))
    finally:
        conn.close()


def max_relative_error(outputs, reference) -> float:
    from cnxv2_dense.deploy.parity import relative_error
    errors = [relative_error(np.asarray(o), r) for o, r in zip(outputs, reference)
              if np.issubdtype(r.dtype, np.floating)]
    return max(errors)


# ----------------------------------------------------------------------------- timing
def seconds(call: Callable, x) -> float:
    """Wall seconds of one ``call(x)``."""
    start = time.perf_counter()
    call(x)
    return time.perf_counter() - start


def time_rounds(run: Callable[[str], float], names: Sequence[str], rounds: int,
                warmup: int) -> Dict[str, List[float]]:
    """``run(name)`` (seconds per call) of each name, interleaved in a rotating order, round
    by round; warm-up rounds dropped."""
    names = list(names)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = run(name)
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def time_case(runners: Dict[str, Callable], inputs: Dict[str, object], rounds: int,
              warmup: int) -> Dict[str, List[float]]:
    """Seconds per call of each in-process runner on its input (:func:`time_rounds`)."""
    return time_rounds(lambda name: seconds(runners[name], inputs[name]), list(runners), rounds,
                       warmup)


def run(args: argparse.Namespace) -> dict:
    import torch

    from cnxv2_dense.deploy import ExportOptions, export_model
    from cnxv2_dense.deploy.exporter import example_input

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    runtimes = list(args.runtimes)
    if 'openvino' in runtimes:
        try:
            import openvino  # noqa: F401
        except ImportError as error:
            print(f'openvino is left out: {error} (pip install -r requirements/deploy.txt)')
            runtimes.remove('openvino')
    import onnxruntime
    versions = dict(torch=torch.__version__, onnxruntime=onnxruntime.__version__)
    if 'openvino' in runtimes:
        import openvino
        versions['openvino'] = openvino.__version__
    isolation = 'one process' if args.in_process else 'a process per runtime'
    print(f'threads={threads} rounds={args.rounds} warmup={args.warmup} ({isolation}) '
          + ' '.join(f'{k}={v}' for k, v in versions.items()), flush=True)
    host = InProcess if args.in_process else WorkerProcess

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config, _, _, checkpoint = random_segmentor(tmp)
        files = {}
        for kind, batch in args.cases:
            backbone = kind.startswith('backbone')
            size = args.size or (args.backbone_size if backbone else args.segmentor_size)
            # The dynamic backbone graph takes every batch: one file per size; a static one
            # per size and batch.
            static_batch = batch if kind == 'backbone_static' else None
            key = (kind, size, static_batch)
            if key not in files:
                options = ExportOptions(shape=(size, size), backbone_only=backbone,
                                        dynamic=kind == 'backbone', batch=static_batch or 1)
                result = export_model(str(config), str(checkpoint),
                                      str(tmp / '_'.join(map(str, key))), options)
                files[key] = result.onnx_file
            spec = dict(kind=kind, config=str(config), checkpoint=str(checkpoint),
                        onnx_file=str(files[key]), threads=threads,
                        pixels=example_input((size, size), batch=batch).numpy())
            hosts = {}
            try:
                for name in runtimes:
                    hosts[name] = host(name, spec)
                reference = hosts['pytorch'].outputs()
                errors = {name: max_relative_error(h.outputs(), reference)
                          for name, h in hosts.items() if name != 'pytorch'}
                before = {name: h.usage() for name, h in hosts.items()}
                times = time_rounds(lambda name: hosts[name].run(), runtimes, args.rounds,
                                    args.warmup)
                after = {name: h.usage() for name, h in hosts.items()}
                calls = args.rounds + args.warmup
                per_call = {name: dict(page_faults=(after[name][0] - before[name][0]) / calls,
                                       system_s=(after[name][1] - before[name][1]) / calls)
                            for name in hosts if before[name] is not None}
            finally:
                for h in hosts.values():
                    h.close()
            medians = {name: statistics.median(values) for name, values in times.items()}
            row = dict(model=kind, batch=batch, size=size, medians=medians, times=times,
                       max_relative_error=errors, per_call=per_call)
            rows.append(row)
            print(f'  {kind} {size} px batch {batch}:', flush=True)
            for name, median in medians.items():
                error = f'   max rel. error vs pytorch {errors[name]:.1e}' if name in errors \
                    else ''
                usage = (f'   {per_call[name]["page_faults"]:.0f} page faults, '
                         f'{per_call[name]["system_s"] * 1000:.0f} ms in the kernel per call'
                         if name in per_call else '')
                print(f'    {name:>12}: {median * 1000:9.1f} ms (median)   pytorch / this = '
                      f'{medians["pytorch"] / median:5.2f}{error}{usage}', flush=True)
    return dict(threads=threads, versions=versions, rounds=args.rounds, warmup=args.warmup,
                isolation=isolation, rows=rows)


def summarise(results: dict) -> bool:
    """Print the ratio table; return whether ONNX Runtime met the goal in every case."""
    print('\nSummary (median ms per call; x = pytorch time / runtime time, > 1: faster)')
    names = [n for n in RUNTIMES if any(n in r['medians'] for r in results['rows'])]
    print(f'{"case":>22} ' + ' '.join(f'{n + " ms":>16} {"x":>5}' for n in names))
    met = True
    for row in results['rows']:
        medians = row['medians']
        cells = ' '.join(f'{medians[n] * 1000:16.1f} {medians["pytorch"] / medians[n]:5.2f}'
                         if n in medians else f'{"-":>16} {"-":>5}' for n in names)
        print(f'{row["model"] + " " + str(row["size"]) + " b" + str(row["batch"]):>22} {cells}')
        if 'onnxruntime' in medians:
            met &= medians['pytorch'] / medians['onnxruntime'] >= GOAL
    print(f'\nGoal (issue 28): onnxruntime >= {GOAL}x pytorch eager in every case -> '
          f'{"met" if met else "NOT met"}')
    print('Spread: pytorch time / onnxruntime time within each round (same moment, same '
          'machine state): median [min, max]')
    for row in results['rows']:
        if 'onnxruntime' in row['times']:
            ratios = [p / o for p, o in zip(row['times']['pytorch'], row['times']['onnxruntime'])]
            print(f'{row["model"] + " " + str(row["size"]) + " b" + str(row["batch"]):>22} '
                  f'{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]')
    return met


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if args.worker_fd is not None:
        return serve(args.worker_fd)
    results = run(args)
    summarise(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == '__main__':
    main()
