"""Training-step time of FCMAE's visible-only encoder against the dense-masked reference.

    python benchmarks/fcmae_speed.py [--arch tiny] [--size 224] [--batch 8] [--rounds 5]

One model, one batch, one mask (ratio 0.6): each round times a forward + backward of
``forward_encoder -> forward_decoder -> forward_loss`` with ``impl='visible'`` and with
``impl='dense_masked'``, alternating which goes first, so machine noise hits both alike (data
loading and the optimiser step are not timed). Prints the median times, the speed-up
dense / visible (the issue's target: >= 2.0 on CPU for tiny, 224 px, batch 8) and the largest
difference between the two losses (they compute the same function).

OpenMP threads wait passively unless ``OMP_WAIT_POLICY`` is set: on a shared machine the default
spin-waiting makes every parallel region wait for a descheduled sibling thread (steps ran 4x
slower than single-threaded here, the many small ops of the visible path most of all).
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # before torch starts OpenMP (see above)

import torch  # noqa: E402

from cnxv2_dense.models import FCMAE  # noqa: E402

IMPLS = ('visible', 'dense_masked')


def train_step(model: FCMAE, imgs: torch.Tensor, mask: torch.Tensor,
               impl: str) -> Tuple[float, float, float]:
    """Time one forward + backward; returns (wall seconds, process CPU seconds, loss)."""
    model.zero_grad(set_to_none=True)
    if imgs.is_cuda:
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    latent, _ = model.forward_encoder(imgs, mask, impl=impl)
    loss = model.forward_loss(imgs, model.forward_decoder(latent, mask), mask)
    loss.backward()
    if imgs.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start, float(loss.detach())


def main(argv: Optional[List[str]] = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--mask-ratio', type=float, default=0.6)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch\'s choice)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = FCMAE(arch=args.arch, mask_ratio=args.mask_ratio).to(args.device).train()
    model.init_weights()
    imgs = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    mask = model.gen_random_mask(imgs)
    times: Dict[str, List[float]] = {impl: [] for impl in IMPLS}
    cpu_times: Dict[str, List[float]] = {impl: [] for impl in IMPLS}
    losses: Dict[str, List[float]] = {impl: [] for impl in IMPLS}
    for round_index in range(args.warmup + args.rounds):
        order = IMPLS if round_index % 2 == 0 else IMPLS[::-1]
        for impl in order:
            elapsed, cpu_elapsed, loss = train_step(model, imgs, mask, impl)
            losses[impl].append(loss)
            if round_index >= args.warmup:
                times[impl].append(elapsed)
                cpu_times[impl].append(cpu_elapsed)

    medians = {impl: statistics.median(values) for impl, values in times.items()}
    ratio = medians['dense_masked'] / medians['visible']
    best_ratio = min(times['dense_masked']) / min(times['visible'])
    cpu_ratio = (statistics.median(cpu_times['dense_masked'])
                 / statistics.median(cpu_times['visible']))
    loss_diff = max(abs(a - b) for a, b in zip(losses['visible'], losses['dense_masked']))
    kept = int(mask[0].numel() - mask[0].sum())
    print(f'device={args.device} threads={torch.get_num_threads()} '
          f'OMP_WAIT_POLICY={os.environ["OMP_WAIT_POLICY"]} arch={args.arch} '
          f'size={args.size} batch={args.batch} mask_ratio={args.mask_ratio} '
          f'({kept}/{mask.shape[1]} patches visible) rounds={args.rounds}')
    for impl in IMPLS:
        print(f'{impl:>13}: {medians[impl] * 1000:8.1f} ms per forward+backward (median; '
              f'all: {", ".join(f"{t * 1000:.0f}" for t in times[impl])})')
    print(f'speed-up dense_masked / visible = {ratio:.2f}x (median wall time), {best_ratio:.2f}x '
          f'(best wall time of each), {cpu_ratio:.2f}x (median process CPU time)')
    print(f'loss: {losses["visible"][-1]:.6f}; max |visible - dense_masked| = {loss_diff:.2e}')
    return ratio


if __name__ == '__main__':
    main()
