"""Forward+backward time of our ConvNeXtV2 against timm's ``convnextv2_<arch>``.

    python benchmarks/backbone_speed.py [--arch tiny] [--batch 8] [--size 224] [--rounds 5]

Both models run the same input, interleaved round by round so machine noise hits both alike,
with the machine's CPU threads (or the GPU when present). Ours returns four normalised stage
outputs (what a detector consumes); timm's runs ``forward_features``. Prints the median time of
each and the ratio timm / ours (>= 1.0 means ours is not slower), and the same for ours with
``channels_last=True`` against ours with the default NCHW layout (same weights, same input).
"""
import argparse
import statistics
import time

import timm
import torch

from cnxv2_dense.models import ConvNeXtV2


def step(model: torch.nn.Module, x: torch.Tensor, forward) -> float:
    start = time.perf_counter()
    out = forward(model, x)
    loss = sum(o.float().mean() for o in out) if isinstance(out, tuple) else out.float().mean()
    loss.backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='tiny', help='atto ... huge (default: tiny)')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    args = parser.parse_args(argv)

    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(0)
    ours = ConvNeXtV2(arch=args.arch).to(device).train()
    ours.init_weights()
    ours_last = ConvNeXtV2(arch=args.arch, channels_last=True).to(device).train()
    ours_last.load_state_dict(ours.state_dict())
    reference = timm.create_model(f'convnextv2_{args.arch}', pretrained=False).to(device).train()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    runs = [('cnxv2_dense', ours, lambda m, t: m(t)),
            ('timm', reference, lambda m, t: m.forward_features(t)),
            ('cnxv2_dense channels_last', ours_last, lambda m, t: m(t))]
    times = {name: [] for name, _, _ in runs}
    for round_index in range(args.warmup + args.rounds):
        for name, model, forward in runs:
            model.zero_grad(set_to_none=True)
            elapsed = step(model, x, forward)
            if round_index >= args.warmup:
                times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians['timm'] / medians['cnxv2_dense']
    print(f'arch={args.arch} device={device} threads={torch.get_num_threads()} batch={args.batch} '
          f'size={args.size} rounds={args.rounds}')
    for name, median in medians.items():
        print(f'{name:>26}: {median * 1000:8.1f} ms per forward+backward (median)')
    print(f'speed ratio timm / cnxv2_dense = {ratio:.3f} (>= 1.0: ours is not slower)')
    last_ratio = medians['cnxv2_dense'] / medians['cnxv2_dense channels_last']
    print(f'speed ratio cnxv2_dense NCHW / channels_last = {last_ratio:.3f} '
          '(> 1.0: channels_last=True is faster)')
    return ratio


if __name__ == '__main__':
    main()
