"""Speed of the backbone a config builds against timm's ConvNeXt V2, under both OpenMP policies.

    python benchmarks/backbone_speed.py    # the figures of docs/speed.md (issue 17)
    python benchmarks/backbone_speed.py --device cuda --amp --batch 32 --policies default
    python benchmarks/backbone_speed.py --cases atto:64 --batch 1 --rounds 1 --warmup 0  # smoke

Models, all on the same weights (timm's, converted) and the same input:

* ``ours``: :class:`ConvNeXtV2` built from a config dict without any flag, as a user's config
  builds it (the default layout for the device, the fused GRN), four normalised stage outputs;
* ``timm``: ``timm.create_model('convnextv2_<arch>')`` as a user creates it (NCHW),
  ``forward_features``;
* ``ours_nchw``: ours with ``channels_last=False`` (the layout that was the default before);
* ``ours_autograd_grn``: ours with every GRN on autograd's reference (``GRN.fused = False``).

Each case (``--cases arch:size``) runs in each mode: ``train`` (forward + backward, train mode)
and ``infer`` (forward under ``torch.no_grad``, eval mode). Within a case the models run
interleaved, round by round, in a rotating order, so machine noise hits all alike; the first
``--warmup`` rounds are dropped and the median of the rest is reported, with the ratio
``timm time / model time`` (> 1: faster than timm).

OpenMP reads ``OMP_WAIT_POLICY`` once, when its runtime starts, so each policy of
``--policies`` runs in its own subprocess (``default``: the variable unset, the OpenMP
library's default, which spins a while before sleeping; ``PASSIVE``: threads sleep at once,
what a busy or shared machine effectively imposes). Both are reported; neither is picked.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

POLICIES = ('default', 'PASSIVE')
MODES = ('train', 'infer')
MODELS = ('ours', 'timm', 'ours_nchw', 'ours_autograd_grn')
GOAL = 1.2  # issue 17: at least 1.2x timm's speed, tiny, 224 px, batch 8, forward+backward


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cases', default='tiny:224,atto:128',
                        help='comma-separated arch:size (default: tiny:224,atto:128)')
    parser.add_argument('--modes', default=','.join(MODES),
                        help='comma-separated, of train, infer (default: both)')
    parser.add_argument('--models', default=','.join(MODELS),
                        help=f'comma-separated, of {", ".join(MODELS)} (default: all; '
                             'timm is always run)')
    parser.add_argument('--policies', default=','.join(POLICIES),
                        help='comma-separated OMP_WAIT_POLICY values, "default" for unset '
                             '(default: default,PASSIVE)')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument('--device', help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--amp', action='store_true',
                        help='autocast the forward (float16 on CUDA, bfloat16 on CPU)')
    parser.add_argument('--worker-out', help=argparse.SUPPRESS)  # set for the subprocesses
    args = parser.parse_args(argv)
    args.cases = [(arch, int(size)) for arch, size in
                  (case.split(':') for case in args.cases.split(','))]
    args.modes = _choices(args.modes, MODES, '--modes')
    args.models = _choices(args.models, MODELS, '--models')
    if 'timm' not in args.models:
        args.models.insert(1, 'timm')
    args.policies = [p.strip() for p in args.policies.split(',') if p.strip()]
    if args.rounds < 1 or args.warmup < 0:
        parser.error('--rounds must be at least 1 and --warmup at least 0')
    return args


def _choices(value: str, valid: Sequence[str], flag: str) -> List[str]:
    chosen = [v.strip() for v in value.split(',') if v.strip()]
    unknown = [v for v in chosen if v not in valid]
    if unknown or not chosen:
        raise SystemExit(f'{flag}: choose from {", ".join(valid)}; got {value!r}')
    return chosen


# ----------------------------------------------------------------------------- worker
def build_models(arch: str, names: Sequence[str], device: str) -> Dict[str, 'torch.nn.Module']:
    """The benchmarked models, all on timm's (random) weights."""
    import timm
    import torch

    from cnxv2_dense.checkpoints import convert_state_dict
    from cnxv2_dense.models import GRN
    from cnxv2_dense.registry import MODELS as REGISTRY

    torch.manual_seed(0)
    reference = timm.create_model(f'convnextv2_{arch}', pretrained=False)
    weights = convert_state_dict(reference.state_dict()).state_dict
    configs = {'ours': dict(type='cnxv2_dense.ConvNeXtV2', arch=arch),  # as a config builds it
               'ours_nchw': dict(type='cnxv2_dense.ConvNeXtV2', arch=arch, channels_last=False),
               'ours_autograd_grn': dict(type='cnxv2_dense.ConvNeXtV2', arch=arch)}
    models = {}
    for name in names:
        if name == 'timm':
            models[name] = reference
            continue
        model = REGISTRY.build(configs[name])
        result = model.load_state_dict(weights, strict=False)
        assert not result.unexpected_keys and all(k.startswith('norm')
                                                  for k in result.missing_keys), result
        if name == 'ours_autograd_grn':
            for module in model.modules():
                if isinstance(module, GRN):
                    module.fused = False
        models[name] = model
    return {name: model.to(device) for name, model in models.items()}


def make_step(model: 'torch.nn.Module', name: str, x: 'torch.Tensor', mode: str,
              amp_dtype) -> Callable[[], float]:
    """A function that runs one timed step of ``model`` and returns its wall seconds."""
    import torch

    forward = model.forward_features if name == 'timm' else model
    device_type = x.device.type

    def autocast():
        return torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def sync() -> None:
        if x.is_cuda:
            torch.cuda.synchronize()

    def train_step() -> float:
        model.zero_grad(set_to_none=True)
        sync()
        start = time.perf_counter()
        with autocast():
            out = forward(x)
            outs = out if isinstance(out, tuple) else (out,)
            loss = sum(o.float().mean() for o in outs)
        loss.backward()
        sync()
        return time.perf_counter() - start

    def infer_step() -> float:
        sync()
        start = time.perf_counter()
        with torch.no_grad(), autocast():
            forward(x)
        sync()
        return time.perf_counter() - start

    model.train(mode == 'train')
    return train_step if mode == 'train' else infer_step


def run_case(args: argparse.Namespace, arch: str, size: int, device: str
             ) -> List[Dict[str, object]]:
    import torch

    amp_dtype = None
    if args.amp:
        amp_dtype = torch.float16 if device == 'cuda' else torch.bfloat16
    models = build_models(arch, args.models, device)
    x = torch.randn(args.batch, 3, size, size, device=device)
    rows = []
    for mode in args.modes:
        steps = [(name, make_step(model, name, x, mode, amp_dtype))
                 for name, model in models.items()]
        times: Dict[str, List[float]] = {name: [] for name, _ in steps}
        for round_index in range(args.warmup + args.rounds):
            shift = round_index % len(steps)
            for name, step in steps[shift:] + steps[:shift]:
                elapsed = step()
                if round_index >= args.warmup:
                    times[name].append(elapsed)
        medians = {name: statistics.median(values) for name, values in times.items()}
        rows.append(dict(arch=arch, size=size, mode=mode, medians=medians, times=times))
        print(f'  {arch} {size} px batch {args.batch} {mode}:', flush=True)
        for name, median in medians.items():
            print(f'    {name:>18}: {median * 1000:9.1f} ms (median)   timm / this = '
                  f'{medians["timm"] / median:5.3f}', flush=True)
    return rows


def worker(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    policy = os.environ.get('OMP_WAIT_POLICY', 'default')
    print(f'OMP_WAIT_POLICY={policy}: device={device} threads={torch.get_num_threads()} '
          f'torch={torch.__version__} amp={args.amp} rounds={args.rounds} '
          f'warmup={args.warmup}', flush=True)
    rows = []
    for arch, size in args.cases:
        rows += run_case(args, arch, size, device)
    meta = dict(policy=policy, device=device, threads=torch.get_num_threads(),
                torch=torch.__version__)
    with open(args.worker_out, 'w') as file:
        json.dump(dict(meta=meta, rows=rows), file)


# ----------------------------------------------------------------------------- driver
def worker_command(args: argparse.Namespace, out_path: str) -> List[str]:
    command = [sys.executable, osp.abspath(__file__),
               '--cases', ','.join(f'{arch}:{size}' for arch, size in args.cases),
               '--modes', ','.join(args.modes), '--models', ','.join(args.models),
               '--batch', str(args.batch), '--rounds', str(args.rounds),
               '--warmup', str(args.warmup), '--worker-out', out_path]
    if args.threads:
        command += ['--threads', str(args.threads)]
    if args.device:
        command += ['--device', args.device]
    if args.amp:
        command.append('--amp')
    return command


def run_policy(args: argparse.Namespace, policy: str) -> dict:
    """Run every case in a fresh process with ``OMP_WAIT_POLICY`` set (or unset) from start."""
    env = dict(os.environ)
    env.pop('OMP_WAIT_POLICY', None)
    if policy != 'default':
        env['OMP_WAIT_POLICY'] = policy
    with tempfile.TemporaryDirectory() as tmp:
        out_path = osp.join(tmp, 'result.json')
        subprocess.run(worker_command(args, out_path), env=env, check=True)
        with open(out_path) as file:
            return json.load(file)


def summarise(results: Dict[str, dict], models: Sequence[str]) -> List[Tuple]:
    """Print ``timm / model`` per case, mode and policy; return the rows of the goal case."""
    others = [name for name in models if name != 'timm']
    header = (f'{"case":>12} {"mode":>5} {"policy":>8} {"timm ms":>9} '
              + ' '.join(f'{name + " ms":>22} {"x timm":>6}' for name in others))
    print('\nSummary (median ms per step; x timm = timm time / model time, > 1: faster '
          'than timm)')
    print(header)
    goal_rows = []
    for policy, result in results.items():
        for row in result['rows']:
            medians = row['medians']
            cells = ' '.join(f'{medians[name] * 1000:22.1f} {medians["timm"] / medians[name]:6.3f}'
                             for name in others)
            print(f'{row["arch"] + ":" + str(row["size"]):>12} {row["mode"]:>5} {policy:>8} '
                  f'{medians["timm"] * 1000:9.1f} {cells}')
            if (row['arch'], row['size'], row['mode']) == ('tiny', 224, 'train'):
                goal_rows.append((policy, medians['timm'] / medians['ours']))
    return goal_rows


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    args = parse_args(argv)
    if args.worker_out:
        worker(args)
        return {}
    results = {policy: run_policy(args, policy) for policy in args.policies}
    goal_rows = summarise(results, args.models)
    if goal_rows and 'ours' in args.models:
        verdict = ', '.join(f'{policy}: {ratio:.3f}x' for policy, ratio in goal_rows)
        met = all(ratio >= GOAL for _, ratio in goal_rows)
        print(f'\nGoal (issue 17, at batch 8): ours >= {GOAL}x timm in tiny:224 train under '
              f'every policy -> {verdict} ({"met" if met else "NOT met"} at this batch '
              f'{args.batch})')
    return results


if __name__ == '__main__':
    main()
