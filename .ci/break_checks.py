"""Each test issue 27 rewrote fails against a deliberate break of the code it guards.

    .venv/bin/python .ci/break_checks.py            # every break (about 10 min on 2 cores)
    .venv/bin/python .ci/break_checks.py --only grn_fp32_statistics

For each break: copy the tracked files to a temporary folder, run the test there (it must pass),
apply the break (one literal replacement in one file; it must match exactly once), run the test
again (it must fail). The working tree is never touched. Not part of CI (it reruns slow tests);
docs/testing.md says when to run it. Exits non-zero if a test passes with its break or fails
without it.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Break:
    name: str
    test: str  # pytest node id, relative to the repository root
    file: str  # the guarded code
    old: str
    new: str
    why: str  # what the old form of the test missed, in a line


BREAKS: List[Break] = [
    Break('official_grn_values', 'tests/test_checkpoint_formats.py::'
          'test_official_layouts_load_every_backbone_tensor',
          'cnxv2_dense/checkpoints/formats.py',
          'return value.reshape(-1)  #', 'return value.reshape(-1).flip(0)  #',
          'official (1, 1, 1, C) GRN tensors loaded channel-reversed'),
    Break('sparse_depthwise_kernel', 'tests/test_checkpoint_formats.py::'
          'test_sparse_kernels_convert_as_the_official_finetune_remap_does',
          'cnxv2_dense/checkpoints/formats.py',
          'kernel.permute(1, 0).reshape(channels, 1, side, side)',
          'kernel.permute(1, 0).reshape(channels, 1, side, side).transpose(2, 3)',
          'a sparse depthwise kernel read with its two spatial axes swapped'),
    Break('heldout_selector_takes_worst', 'tests/test_fcmae_study.py::'
          'test_quick_study_chooses_each_lr_on_held_out_and_reports_val_miou',
          'experiments/fcmae_study/common.py',
          "run['miou'] > best[group]['miou']", "run['miou'] < best[group]['miou']",
          'the study keeps the lr that scored worst on held-out'),
    Break('init_cut_at_two_std', 'tests/test_backbone.py::'
          'test_init_is_trunc_normal_with_zero_bias_and_the_official_cut',
          'cnxv2_dense/models/convnextv2.py',
          "layer=['Conv2d', 'Linear'], std=.02,",
          "layer=['Conv2d', 'Linear'], std=.02, a=-.04, b=.04,",
          'trunc normal cut at +-2 std instead of +-2 absolute'),
    Break('frozen_iters_ignored', 'tests/test_fcmae_levers.py::'
          'test_a_fine_tuning_jobs_frozen_iters_keep_the_backbone_still_that_long',
          'experiments/fcmae_study/training.py',
          'thaw_at = 0 if freeze_backbone else min(study.frozen_backbone_iters, '
          'study.finetune_iters)',
          'thaw_at = 0',
          "a job's frozen iterations dropped: the backbone trains from the first step"),
    Break('grn_fp32_statistics', 'tests/test_layers.py::'
          'test_grn_and_layernorm_survive_large_activations_under_autocast',
          'cnxv2_dense/models/layers.py',
          'return x.float() if x.dtype in _LOW_PRECISION else x', 'return x',
          'GRN and LayerNorm statistics computed in float16 / bfloat16'),
    Break('infer_draws_nothing', 'tests/test_tools.py::test_infer_writes_pictures',
          'tools/infer.py',
          'dict(pred_score_thr=args.score_thr)', 'dict(pred_score_thr=2.0)',
          'pictures written with no detection drawn on them'),
    Break('fcmae_loss_without_gradient', 'tests/test_fcmae.py::'
          'test_short_training_run_lowers_the_loss_on_images_it_never_sees',
          'cnxv2_dense/models/fcmae.py',
          'return (loss * mask).sum() / mask.sum()',
          'return (loss * mask).sum() / mask.sum() * 0 + loss.detach().mean()',
          'a loss that no longer trains the model (its gradient is zero)'),
    Break('layer_ids_of_the_v1_rule', 'tests/test_layer_decay.py::'
          'test_scales_and_weight_decay_equal_the_v1_rule',
          'cnxv2_dense/models/layer_depth.py',
          'FIRST_STAGE2_ID + index // BLOCKS_PER_LAYER_ID',
          'FIRST_STAGE2_ID + (index + 1) // BLOCKS_PER_LAYER_ID',
          'third-stage blocks grouped off by one (the removed hard-coded-ids test duplicated '
          'this rule)'),
    Break('query_head_recipe_decay_rate', 'tests/test_query_heads.py::'
          'test_every_parameter_of_the_full_size_model_gets_the_v1_rule_times_the_custom_keys'
          '[mask2former_cnxv2_l_ade20k.py]',
          'configs/mask2former_cnxv2_l_ade20k.py',
          "decay_rate=0.9, decay_type='stage_wise'", "decay_rate=0.8, decay_type='stage_wise'",
          "a B / L query-head config whose decay rate is not its header's (issue 29)"),
    Break('export_grn_norm_squared', 'tests/test_export.py::'
          'test_the_export_grn_equals_grn_and_stays_finite_in_float16',
          'cnxv2_dense/deploy/grn_export.py',
          'gx = flat.sum(dim=1, keepdim=True).sqrt().unsqueeze(1)',
          'gx = flat.sum(dim=1, keepdim=True).unsqueeze(1)',
          "the export GRN's norm left squared (no Sqrt)"),
    Break('static_batch_unchecked', 'tests/test_export.py::'
          'test_a_static_batch_export_takes_that_batch_and_refuses_another',
          'cnxv2_dense/deploy/runtime.py',
          'if self.static_batch is not None and batch != self.static_batch:',
          'if False:',
          'a static-batch export fed another batch without the named fix'),
]


def tracked_copy(dest: Path) -> None:
    """The tracked files (and their uncommitted edits) of the checkout, under ``dest``."""
    files = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split('\0')
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_test(copy: Path, test: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy))  # the copy's cnxv2_dense, not the checkout's
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider',
                           test], cwd=copy, env=env, capture_output=True, text=True)


def apply(copy: Path, item: Break) -> None:
    path = copy / item.file
    text = path.read_text()
    if text.count(item.old) != 1:
        raise SystemExit(f'{item.name}: {item.old!r} occurs {text.count(item.old)} times in '
                         f'{item.file}, not once: update the break to the code')
    path.write_text(text.replace(item.old, item.new))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', choices=[b.name for b in BREAKS])
    args = parser.parse_args(argv)
    chosen = [b for b in BREAKS if not args.only or b.name in args.only]
    failures = 0
    for item in chosen:
        with tempfile.TemporaryDirectory(prefix='cnxv2_break_') as tmp:
            copy = Path(tmp)
            tracked_copy(copy)
            intact = run_test(copy, item.test)
            apply(copy, item)
            broken = run_test(copy, item.test)
        ok = intact.returncode == 0 and broken.returncode != 0
        failures += not ok
        last = (broken.stdout.strip().splitlines() or [''])[-1]
        print(f'{"ok  " if ok else "FAIL"} {item.name}: intact '
              f'{"passes" if intact.returncode == 0 else "FAILS"}, broken '
              f'{"fails" if broken.returncode else "PASSES"} ({last})\n'
              f'     {item.test}\n     break: {item.why} ({item.file})', flush=True)
        if intact.returncode != 0:
            print(intact.stdout[-3000:], intact.stderr[-2000:])
    print(f'{len(chosen) - failures} of {len(chosen)} breaks caught')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
