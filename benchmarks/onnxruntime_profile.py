"""Where ONNX Runtime spends its time on an exported model: the share of each operator type.

    python benchmarks/onnxruntime_profile.py                      # V2-T backbone, 224 px, b8
    python benchmarks/onnxruntime_profile.py --model upernet --batch 1 --size 512

Exports the model as ``benchmarks/export_speed.py`` does (random weights, fp32, opset 17; the
backbone with ``--dynamic``), runs it ``--runs`` times with ONNX Runtime's profiler on (CPU
provider, every graph optimisation, ``--threads`` threads) and prints each operator type's share
of the summed kernel time and its node count in the optimised graph, then the ``--top`` slowest
nodes by name. Then it times the same file
at ``ORT_ENABLE_EXTENDED`` (no NCHWc layout transformation) beside ``ORT_ENABLE_ALL``,
interleaved, to show what the layout pass is worth. docs/speed.md quotes the output.
"""
import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

import export_speed  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', choices=('backbone', 'upernet'), default='backbone')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--runs', type=int, default=4)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--top', type=int, default=8, help='the slowest nodes to list')
    args = parser.parse_args(argv)

    import onnxruntime as ort

    from cnxv2_dense.deploy import ExportOptions, export_model
    from cnxv2_dense.deploy.exporter import example_input

    tmp = Path(tempfile.mkdtemp(prefix='ort_profile_'))
    config, _, _, checkpoint = export_speed.random_segmentor(tmp)
    backbone = args.model == 'backbone'
    onnx_file = export_model(str(config), str(checkpoint), str(tmp / 'onnx'), ExportOptions(
        shape=(args.size, args.size), backbone_only=backbone, dynamic=backbone)).onnx_file
    pixels = example_input((args.size, args.size), batch=args.batch).numpy()

    def session(level, profile: bool = False):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = level
        if profile:
            options.enable_profiling = True
            options.profile_file_prefix = str(tmp / 'profile')
        return ort.InferenceSession(str(onnx_file), options, providers=['CPUExecutionProvider'])

    profiled = session(ort.GraphOptimizationLevel.ORT_ENABLE_ALL, profile=True)
    for _ in range(args.runs):
        profiled.run(None, {'pixels': pixels})
    events = json.loads(Path(profiled.end_profiling()).read_text())
    time_of, nodes_of = collections.Counter(), collections.Counter()
    node_time, node_op = collections.Counter(), {}
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith('_kernel_time'):
            time_of[event['args']['op_name']] += event['dur']
            nodes_of[event['args']['op_name']] += 1
            node = event['name'][:-len('_kernel_time')]
            node_time[node] += event['dur']
            node_op[node] = event['args']['op_name']
    total = sum(time_of.values())
    print(f'{args.model} {args.size} px batch {args.batch}, {args.threads} threads, onnxruntime '
          f'{ort.__version__}, ORT_ENABLE_ALL: share of kernel time by operator')
    shares = {}
    for op, spent in time_of.most_common():
        shares[op] = spent / total
        print(f'  {op:24s} {100 * spent / total:5.1f}%   {nodes_of[op] // args.runs} nodes')
    print(f'the {args.top} slowest nodes (ms per run, share; names from the optimised graph):')
    top_nodes = []
    for node, spent in node_time.most_common(args.top):
        top_nodes.append(dict(node=node, op=node_op[node], ms=spent / 1000 / args.runs,
                              share=spent / total))
        print(f'  {spent / 1000 / args.runs:9.1f} ms {100 * spent / total:5.1f}%  '
              f'{node_op[node]:12s} {node}')

    levels = {'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    runners = {name: (lambda x, s=session(level): s.run(None, {'pixels': x}))
               for name, level in levels.items()}
    times = export_speed.time_case(runners, {name: pixels for name in runners}, rounds=5,
                                   warmup=1)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print('median ms: ' + ', '.join(f'ORT_ENABLE_{n.upper()} {1000 * m:.1f}'
                                    for n, m in medians.items()))
    return dict(shares=shares, top_nodes=top_nodes, medians=medians)


if __name__ == '__main__':
    main()
