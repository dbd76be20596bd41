"""One command that says whether cnxv2_dense works on a CUDA machine, and how fast it is.

    python benchmarks/gpu_check.py --out DIR                    # a GPU machine (~5 min on an H200)
    python benchmarks/gpu_check.py --out DIR --wheelhouse build/wheelhouse   # a bare, offline one
    python benchmarks/gpu_check.py --device cpu --quick --out DIR   # the same paths, < 1 min

Writes ``DIR/gpu_check.json`` (the machine, the settings and every check with its status and
figures) and ``DIR/gpu_check.md`` (the tables ``docs/speed.md`` takes), prints the tables, and
exits 1 when a correctness check fails or errors (0 otherwise: skipped checks name why).

Correctness (pass / fail; float32 checks run with TF32 off):

* ``timm_parity_fp32``: the backbone as a config builds it against timm's ``convnextv2_<arch>``
  on the same weights (converted by :func:`cnxv2_dense.checkpoints.convert_state_dict`, GRN
  parameters made non-zero): stage outputs and every gradient to 1e-5 of each tensor's scale;
* ``backbone_autocast_<dtype>[_large]``: under autocast float16 / bfloat16, finite outputs and
  gradients close to timm's float32 ones; ``_large`` scales every block's LayerNorm weight so
  that GRN's sum of squares exceeds float16's range (the overflow case; the check records that
  it does);
* ``grn_fused_<dtype>``: :func:`grn_fused` against :func:`grn_reference` (forward and the
  gradients of the input, gamma and beta), both layouts, with and without a mask, unit and
  large inputs, and both against a float64 evaluation;
* ``fcmae_paths_agree``: FCMAE's visible-only and dense-masked encoders, same loss and
  gradients;
* ``with_cp_gradients``: ``with_cp=True`` gives the gradients of ``with_cp=False``;
* ``mask_rcnn_steps`` / ``upernet_steps``: a training step (under the configs' AMP on CUDA) and
  a predict step of the shipped tiny configs, where mmdet / mmseg and mmcv's compiled ops are
  importable.

Measurements (ratios of contestants timed side by side in this run, interleaved round by round
in a rotating order, medians after warm-up; steps synchronise on CUDA):

* ``fcmae_speedup_<fp32|amp>``: FCMAE step time, dense-masked / visible (CPU: 2.5x);
* ``speed_<arch><size>_b<batch>_<train|infer>_<fp32|amp>[_cudnn_benchmark]``: timm against ours
  channels-last and ours NCHW (the step of ``benchmarks/backbone_speed.py``);
* ``memory_with_cp_<fp32|amp>``: peak ``torch.cuda.max_memory_allocated`` of a training step
  with and without ``with_cp``;
* ``layout_verdict``: from the speed rows, which layout is faster on this device, against the
  default in ``CHANNELS_LAST_DEVICES`` (``cnxv2_dense/models/convnextv2.py``).

AMP means autocast float16 on CUDA (mmengine's ``AmpOptimWrapper`` default) and bfloat16 on CPU.
Sizes and repeat counts are the constants :data:`FULL` and :data:`QUICK` below. It needs PyTorch,
timm, this checkout and the package's pure-Python dependencies (mmengine, mmcv without ops);
``--wheelhouse DIR`` installs those from wheels built beforehand on a networked machine
(``bash benchmarks/make_offline_wheelhouse.sh``) into a temporary folder when they are missing.
See ``docs/speed.md``, section GPU.
"""
import argparse
import copy
import datetime
import functools
import glob
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import os.path as osp
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path.insert(0, ROOT)  # run from a checkout


@dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one run. Cases are ``(arch, image side, batch)``."""

    parity: Tuple[str, int, int]  # timm parity and the autocast checks (a timm arch name)
    grn_shape: Tuple[int, int, int, int]  # (N, H, W, C) of the GRN checks
    fcmae: Tuple[str, int, int]  # FCMAE paths-agree check
    fcmae_speed: Tuple[str, int, int]
    fcmae_decoder_dim: int
    speed_cases: Tuple[Tuple[str, int, int], ...]  # against timm
    memory: Tuple[str, int, int]  # with_cp gradients and peak memory
    toolbox: Tuple[str, int, int]  # Mask R-CNN / UperNet steps (backbone arch, side, batch)
    rounds: int  # timed rounds per measurement
    warmup: int  # untimed rounds first
    budget_s: float  # measurements that would start after this many seconds are skipped


# The run: tiny at 224 px batch 32 and base at 224 px batch 16 against timm.
FULL = Settings(parity=('tiny', 224, 2), grn_shape=(8, 56, 56, 384), fcmae=('tiny', 224, 4),
                fcmae_speed=('tiny', 224, 32), fcmae_decoder_dim=512,
                speed_cases=(('tiny', 224, 32), ('base', 224, 16)), memory=('tiny', 224, 32),
                toolbox=('tiny', 512, 2), rounds=20, warmup=5, budget_s=420.)
# The same code paths at toy sizes (--quick, CI on CPU).
QUICK = Settings(parity=('atto', 64, 2), grn_shape=(2, 8, 8, 16), fcmae=('atto', 64, 2),
                 fcmae_speed=('atto', 64, 2), fcmae_decoder_dim=64,
                 speed_cases=(('atto', 64, 2),), memory=('atto', 64, 2),
                 toolbox=('atto', 64, 2), rounds=2, warmup=1, budget_s=120.)

PASS, FAIL, MEASURED, SKIPPED, ERROR = 'pass', 'fail', 'measured', 'skipped', 'error'
CORRECTNESS, MEASUREMENT = 'correctness', 'measurement'
MODES = ('train', 'infer')
PRECISIONS = ('fp32', 'amp')
LOW_PRECISION = ('float16', 'bfloat16')
FP16_MAX = 65504.  # torch.finfo(torch.float16).max

# Tolerances, as max |ours - reference| / max |reference| per tensor ("scaled error") for the
# exact checks and as ||ours - reference|| / ||reference|| against timm in float32 for the
# autocast ones. Those are the precision of the dtype through the network, not of our code: on
# CPU (atto, 64 px) float16 gave 2e-3 / 9e-3 (outputs / gradients, large input) and bfloat16
# 1.4e-2 / 6e-2, timm under the same autocast as much; an overflow gives inf, a wrong cast O(1).
EXACT_TOL = 1e-5
AUTOCAST_TOL = {'float16': dict(outputs=1e-2, grads=5e-2),
                'bfloat16': dict(outputs=5e-2, grads=2e-1)}
# Every block's LayerNorm weight times this in the ``_large`` autocast checks.
LARGE_ACTIVATION_SCALE = 200.
GRN_MAGNITUDES = (1., 300.)  # input scales of the GRN checks; 300 overflows a float16 sum

# The wheelhouse: what ``import cnxv2_dense`` needs beyond a PyTorch image's packages
# (MACHINE_PACKAGES). mmcv-lite is mmcv without compiled ops (the ``mmcv`` module). tomli is
# needed by yapf on Python < 3.11 only.
WHEELHOUSE_PACKAGES = ('mmengine', 'mmcv-lite', 'addict', 'yapf', 'platformdirs', 'termcolor',
                       'tomli')
# What the GPU machine is taken to hold, with everything these require (the image of this
# project's H200 machines lists them, see docs/speed.md); pip installs into the target folder.
MACHINE_PACKAGES = ('torch', 'torchvision', 'timm', 'numpy', 'pillow', 'pyyaml', 'packaging',
                    'safetensors', 'opencv-python-headless', 'matplotlib', 'rich', 'pip')
# Other distributions of the same import package: (installed here, as named above).
SAME_PACKAGE = {'opencv-python': 'opencv-python-headless', 'mmcv': 'mmcv-lite'}


# ----------------------------------------------------------------------------- results
@dataclass
class Result:
    """What one check found: a status, one line for the table, figures for the JSON."""

    status: str
    summary: str = ''
    details: Dict[str, Any] = field(default_factory=dict)


def verdict(ok: bool, summary: str, **details: Any) -> Result:
    return Result(PASS if ok else FAIL, summary, details)


def skipped(reason: str, **details: Any) -> Result:
    return Result(SKIPPED, reason, details)


@dataclass
class Check:
    name: str
    kind: str
    run: Callable[['Context'], Result]


@dataclass
class Context:
    """The state the checks share: device, settings, the results so far and one cached value
    (models are built once per case, then replaced by the next case's)."""

    device: Any  # torch.device
    settings: Settings
    deadline: float
    results: List[Dict[str, Any]] = field(default_factory=list)
    _cache_key: Any = None
    _cache_value: Any = None

    @property
    def is_cuda(self) -> bool:
        return self.device.type == 'cuda'

    @property
    def amp_dtype(self):
        """The autocast dtype of 'amp' rows: float16 on CUDA, bfloat16 elsewhere."""
        import torch
        return torch.float16 if self.is_cuda else torch.bfloat16

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        if key != self._cache_key:
            self._cache_key, self._cache_value = None, None  # free the last one first
            self.empty_cache()
            self._cache_value, self._cache_key = build(), key
        return self._cache_value

    def empty_cache(self) -> None:
        if self.is_cuda:
            import torch
            torch.cuda.empty_cache()

    def over_budget(self) -> Optional[Result]:
        if time.monotonic() > self.deadline:
            return skipped(f'time budget spent ({self.settings.budget_s:.0f} s, --budget-s) '
                           'before this measurement began')
        return None


# ----------------------------------------------------------------------------- helpers
def scaled_error(ours, reference) -> float:
    """``max |ours - reference| / max |reference|`` (inf when ours is not finite)."""
    import torch
    if not torch.isfinite(ours).all():
        return math.inf
    ours, reference = ours.detach().double(), reference.detach().double()
    scale = reference.abs().max().clamp_min(1e-30)
    return float((ours - reference).abs().max() / scale)


def relative_l2(ours, reference) -> float:
    """``||ours - reference|| / ||reference||`` (inf when ours is not finite)."""
    import torch
    if not torch.isfinite(ours).all():
        return math.inf
    ours, reference = ours.detach().double(), reference.detach().double()
    return float((ours - reference).norm() / reference.norm().clamp_min(1e-30))


def worst(errors: Dict[str, float]) -> Tuple[str, float]:
    name = max(errors, key=lambda k: errors[k])
    return name, errors[name]


def dtype_of(name: str):
    import torch
    return getattr(torch, name)


def autocast_supported(device_type: str, dtype_name: str) -> Optional[str]:
    """None when ``torch.autocast(device_type, dtype)`` autocasts here, else why not."""
    import torch
    if device_type == 'cuda' and dtype_name == 'bfloat16' and not torch.cuda.is_bf16_supported():
        return 'this GPU does not support bfloat16'
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        try:
            torch.autocast(device_type, dtype=dtype_of(dtype_name))
        except (RuntimeError, UserWarning) as err:
            return (f'torch {torch.__version__} has no {dtype_name} autocast on {device_type} '
                    f'({err})')
    return None


def autocast(device, dtype):
    """Autocast to ``dtype`` on ``device``'s type; a no-op context for None."""
    import torch
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextmanager
def exact_float32() -> Iterator[None]:
    """TF32 off for CUDA matmuls and convolutions inside (float32 means float32 here)."""
    import torch
    matmul = torch.get_float32_matmul_precision()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision('highest')
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


@contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    import torch
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def synchronize(device) -> None:
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def interleave(steps: Dict[str, Callable[[], float]], rounds: int,
               warmup: int) -> Dict[str, List[float]]:
    """Run each step once per round, in an order rotating by one each round; the times (s) of
    the rounds after ``warmup``."""
    names = list(steps)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = steps[name]()
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def timed(device, fn: Callable[[], Any]) -> Callable[[], float]:
    """``fn`` as a step returning its wall seconds, synchronised on CUDA."""
    def step() -> float:
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - start
    return step


def median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000.


def load_benchmark(name: str):
    """A sibling benchmark script as a module (their step functions are reused here)."""
    module_name = f'_cnxv2_benchmark_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, osp.join(HERE, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return sys.modules[module_name]


def replace_type(cfg: Any, old: str, new: str) -> None:
    """Replace ``type=old`` by ``type=new`` everywhere in a config (in place)."""
    if isinstance(cfg, dict):
        if cfg.get('type') == old:
            cfg['type'] = new
        for value in cfg.values():
            replace_type(value, old, new)
    elif isinstance(cfg, list):
        for value in cfg:
            replace_type(value, old, new)


# ----------------------------------------------------------------------------- models
def timm_and_ours(arch: str, device, grn_std: float = 0.5, norm_scale: float = 1.,
                  **ours_kwargs: Any):
    """timm's ``convnextv2_<arch>`` and our backbone on its weights (converted by the package's
    own converter), on ``device``.

    Args:
        arch (str): A timm ConvNeXt V2 arch (atto ... huge).
        device (torch.device): Where both models go.
        grn_std (float): GRN gamma / beta drawn from N(0, grn_std) (timm starts them at zero,
            which makes GRN the identity); 0 keeps timm's init. Defaults to 0.5.
        norm_scale (float): Every block's LayerNorm weight is multiplied by this (large
            activations). Defaults to 1.
        **ours_kwargs: More arguments of :class:`ConvNeXtV2` (``channels_last``, ``with_cp``).
    """
    import timm
    import torch

    from cnxv2_dense.checkpoints import convert_state_dict
    from cnxv2_dense.models import ConvNeXtV2

    torch.manual_seed(0)
    reference = timm.create_model(f'convnextv2_{arch}', pretrained=False)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if grn_std and '.grn.' in name:
                param.normal_(std=grn_std)
            if norm_scale != 1. and re.search(r'blocks\.\d+\.norm\.weight$', name):
                param.mul_(norm_scale)
    weights = convert_state_dict(reference.state_dict()).state_dict
    ours = ConvNeXtV2(arch=arch, **ours_kwargs)
    loaded = ours.load_state_dict(weights, strict=False)
    if loaded.unexpected_keys or not all(k.startswith('norm') for k in loaded.missing_keys):
        raise RuntimeError(f'timm weights did not load into ConvNeXtV2: {loaded}')
    return reference.to(device), ours.to(device)


def timm_stage_outputs(reference, x) -> List[Any]:
    """timm's four stage outputs, each through a LayerNorm over channels (eps 1e-6) as our
    freshly built output norms ``norm{i}`` (weight 1, bias 0) compute it."""
    import torch.nn.functional as F
    feats = reference.forward_intermediates(x, intermediates_only=True)
    return [F.layer_norm(f.float().permute(0, 2, 3, 1), f.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)
            for f in feats]


def loss_weights(outputs: Sequence[Any], seed: int = 1) -> List[Any]:
    import torch
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=generator).to(o.device) for o in outputs]


def weighted_sum(outputs: Sequence[Any], weights: Sequence[Any]):
    return sum((o.float() * w).sum() for o, w in zip(outputs, weights))


def backward_both(reference, ours, x, dtype=None):
    """Forward and backward of timm (float32) and ours (under autocast ``dtype`` if given) on
    ``x``, with the same random weighting of the four stage outputs as the loss.

    Returns:
        tuple: ``(outputs, input grad, parameter grads)`` of timm, then of ours; timm's parameter
        grads under our names (the package's converter).
    """
    from cnxv2_dense.checkpoints import convert_state_dict

    def run(model, outputs_of, amp_dtype, weights=None):
        model.zero_grad(set_to_none=True)
        model.train()
        x_in = x.clone().requires_grad_()
        with autocast(x.device, amp_dtype):
            outs = outputs_of(x_in)
        weights = loss_weights(outs) if weights is None else weights
        weighted_sum(outs, weights).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        return [o.detach().float() for o in outs], x_in.grad, grads, weights

    t_outs, t_dx, t_grads, weights = run(reference,
                                         lambda v: timm_stage_outputs(reference, v), None)
    o_outs, o_dx, o_grads, _ = run(ours, lambda v: list(ours(v)), dtype, weights)
    return (t_outs, t_dx, convert_state_dict(t_grads).state_dict), (o_outs, o_dx, o_grads)


# ----------------------------------------------------------------------------- correctness
def check_timm_parity(ctx: Context) -> Result:
    import torch
    arch, size, batch = ctx.settings.parity
    with exact_float32():
        reference, ours = timm_and_ours(arch, ctx.device)
        torch.manual_seed(2)
        x = torch.randn(batch, 3, size, size, device=ctx.device)
        (t_outs, t_dx, t_grads), (o_outs, o_dx, o_grads) = backward_both(reference, ours, x)
    shared = {n for n in o_grads if not n.startswith('norm')}
    if set(t_grads) != shared:
        return verdict(False, 'timm and ours have different parameters: '
                       f'{sorted(set(t_grads) ^ shared)[:5]}')
    errors = {f'stage{i}': scaled_error(o, t) for i, (o, t) in enumerate(zip(o_outs, t_outs))}
    errors['input_grad'] = scaled_error(o_dx, t_dx)
    errors.update({f'grad:{n}': scaled_error(o_grads[n], t_grads[n].reshape(o_grads[n].shape))
                   for n in sorted(shared)})
    name, value = worst(errors)
    return verdict(value <= EXACT_TOL,
                   f'{arch} {size} px: worst scaled error {value:.1e} ({name}) over 4 outputs '
                   f'and {len(errors) - 4} gradients, tolerance {EXACT_TOL:g}',
                   arch=arch, size=size, batch=batch, tolerance=EXACT_TOL, worst=name,
                   worst_error=value, errors=errors, tf32=False)


def check_backbone_autocast(ctx: Context, dtype_name: str, large: bool) -> Result:
    import torch

    from cnxv2_dense.models import GRN
    why_not = autocast_supported(ctx.device.type, dtype_name)
    if why_not:
        return skipped(why_not)
    arch, size, batch = ctx.settings.parity
    dtype = dtype_of(dtype_name)
    scale = LARGE_ACTIVATION_SCALE if large else 1.
    tol = AUTOCAST_TOL[dtype_name]
    with exact_float32():
        reference, ours = ctx.cached(('pair', arch, scale),
                                     lambda: timm_and_ours(arch, ctx.device, norm_scale=scale))
        torch.manual_seed(2)
        x = torch.randn(batch, 3, size, size, device=ctx.device)
        # GRN's largest per-channel sum of squares in float32: above 65504 a float16 sum
        # overflows (the case GRN's float32 statistic exists for).
        sums: List[float] = []

        def record(module, inputs, output):
            sums.append(float(inputs[0].detach().float().pow(2).sum(dim=module.spatial_dims).max()))
        hooks = [m.register_forward_hook(record) for m in ours.modules() if isinstance(m, GRN)]
        try:
            with torch.no_grad():
                ours(x)
        finally:
            for hook in hooks:
                hook.remove()
        (t_outs, t_dx, t_grads), (o_outs, o_dx, o_grads) = backward_both(reference, ours, x,
                                                                         dtype)
        # timm under the same autocast, for the record (not part of the verdict).
        with torch.no_grad(), autocast(ctx.device, dtype):
            timm_autocast = [f.float() for f in reference.forward_intermediates(
                x, intermediates_only=True)]
        timm_plain = [f.float()
                      for f in reference.forward_intermediates(x, intermediates_only=True)]
    out_err = max(relative_l2(o, t) for o, t in zip(o_outs, t_outs))
    names = sorted(n for n in t_grads)
    flat_ours = torch.cat([o_grads[n].flatten().float() for n in names] + [o_dx.flatten()])
    flat_timm = torch.cat([t_grads[n].reshape(o_grads[n].shape).flatten().float() for n in names]
                          + [t_dx.flatten()])
    grad_err = relative_l2(flat_ours, flat_timm)
    finite = all(bool(torch.isfinite(t).all()) for t in o_outs + [o_dx] + list(o_grads.values()))
    max_sum = max(sums)
    overflow_case = max_sum > FP16_MAX
    ok = finite and out_err <= tol['outputs'] and grad_err <= tol['grads']
    notes = []
    if large and not overflow_case:
        ok = False
        notes.append(f'the large input did not reach float16 overflow (GRN sum of squares '
                     f'{max_sum:.3g} <= {FP16_MAX:g}): raise LARGE_ACTIVATION_SCALE')
    timm_finite = all(bool(torch.isfinite(t).all()) for t in timm_autocast)
    timm_err = max(relative_l2(a, b) for a, b in zip(timm_autocast, timm_plain))
    summary = (f'{arch} {size} px: outputs {out_err:.1e} (tol {tol["outputs"]:g}), gradients '
               f'{grad_err:.1e} (tol {tol["grads"]:g}) from timm fp32, '
               f'{"finite" if finite else "NOT FINITE"}; GRN sum of squares up to {max_sum:.2g}; '
               f'timm under the same autocast: {"finite" if timm_finite else "NOT FINITE"}, '
               f'{timm_err:.1e}')
    return verdict(ok, '; '.join([summary] + notes), arch=arch, size=size, batch=batch,
                   dtype=dtype_name, norm_scale=scale, output_rel_l2=out_err,
                   grad_rel_l2=grad_err, tolerance=tol, finite=finite,
                   grn_max_sum_of_squares=max_sum, exceeds_float16=overflow_case,
                   timm_autocast_finite=timm_finite, timm_autocast_rel_l2=timm_err)


def check_grn(ctx: Context, dtype_name: str) -> Result:
    import torch

    from cnxv2_dense.models import GRN
    low = dtype_name != 'float32'
    if low:
        why_not = autocast_supported(ctx.device.type, dtype_name)
        if why_not:
            return skipped(why_not)
    dtype = dtype_of(dtype_name)
    # Outputs and input gradients come back in x's dtype: from the same float32 math (fused vs
    # reference) or from float64, at most a rounding step of that dtype apart.
    tol_io = 2 * torch.finfo(dtype).eps if low else EXACT_TOL
    n, h, w, c = ctx.settings.grn_shape
    errors: Dict[str, float] = {}
    finite = True
    for case, (channels_last, masked, magnitude) in enumerate(
            (cl, m, mag) for cl in (True, False) for m in (False, True) for mag in GRN_MAGNITUDES):
        tag = f'{"nhwc" if channels_last else "nchw"}{"-masked" if masked else ""}-x{magnitude:g}'
        torch.manual_seed(case)
        grn = GRN(c, channels_last=channels_last)
        with torch.no_grad():
            grn.gamma.normal_(std=0.5)
            grn.beta.normal_(std=0.5)
        grn64 = copy.deepcopy(grn).double()
        grn = grn.to(ctx.device)
        shape = (n, h, w, c) if channels_last else (n, c, h, w)
        x0 = (torch.randn(shape) * magnitude).to(ctx.device, dtype)
        dy = torch.randn(shape).to(ctx.device, dtype)
        visible = None
        if masked:
            visible = (torch.rand(n, h, w, 1) > 0.6).to(ctx.device, dtype)
            visible = visible if channels_last else visible.permute(0, 3, 1, 2)
        got = {}
        for fused in (True, False):
            grn.fused = fused
            grn.zero_grad(set_to_none=True)
            x = x0.clone().requires_grad_()
            with autocast(ctx.device, dtype if low else None):
                out = grn(x, visible)
            out.backward(dy)
            got[fused] = dict(out=out.detach(), dx=x.grad, dgamma=grn.gamma.grad.clone(),
                              dbeta=grn.beta.grad.clone())
        # float64, on the CPU (same inputs, rounded to dtype): how accurate both are.
        grn64.fused = False
        x64 = x0.double().cpu().requires_grad_()
        out64 = grn64(x64, None if visible is None else visible.double().cpu())
        out64.backward(dy.double().cpu())
        exact = dict(out=out64.detach(), dx=x64.grad, dgamma=grn64.gamma.grad,
                     dbeta=grn64.beta.grad)
        for key in ('out', 'dx', 'dgamma', 'dbeta'):
            fused_value = got[True][key]
            finite &= bool(torch.isfinite(fused_value).all())
            errors[f'{tag} {key} fused-reference'] = scaled_error(fused_value, got[False][key])
            errors[f'{tag} {key} fused-float64'] = scaled_error(fused_value.cpu(), exact[key])
    # gamma / beta gradients are float32 in every case (float32 sums in another order).
    limits = {k: tol_io if k.split()[1] in ('out', 'dx') else EXACT_TOL for k in errors}
    failing = {k: v for k, v in errors.items() if v > limits[k]}
    name, _ = worst({k: v / limits[k] for k, v in errors.items()})
    return verdict(finite and not failing,
                   f'{len(errors) // 8} cases (layouts, mask, x1 / x300): worst {errors[name]:.1e} '
                   f'({name}, limit {limits[name]:.1e}); {"finite" if finite else "NOT FINITE"}'
                   + (f'; {len(failing)} over: {sorted(failing)[:3]}' if failing else ''),
                   dtype=dtype_name, shape=[n, h, w, c], errors=errors, limits=limits,
                   finite=finite)


def fcmae_model(arch: str, decoder_dim: int, device):
    """FCMAE with its own init and non-zero GRN parameters (zero makes GRN the identity)."""
    import torch

    from cnxv2_dense.models import FCMAE
    torch.manual_seed(0)
    model = FCMAE(arch=arch, decoder_dim=decoder_dim)
    model.init_weights()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if '.grn.' in name:
                param.normal_(std=0.5)
    return model.to(device).train()


def fcmae_step(model, imgs, mask, impl: str, amp_dtype=None):
    """One forward + backward of the FCMAE loss with the given encoder path."""
    model.zero_grad(set_to_none=True)
    with autocast(imgs.device, amp_dtype):
        latent, _ = model.forward_encoder(imgs, mask, impl=impl)
        loss = model.forward_loss(imgs, model.forward_decoder(latent, mask), mask)
    loss.backward()
    return loss


def check_fcmae_paths(ctx: Context) -> Result:
    import torch
    arch, size, batch = ctx.settings.fcmae
    with exact_float32():
        model = fcmae_model(arch, ctx.settings.fcmae_decoder_dim, ctx.device)
        torch.manual_seed(3)
        imgs = torch.randn(batch, 3, size, size, device=ctx.device)
        mask = model.gen_random_mask(imgs)
        found = {}
        for impl in ('visible', 'dense_masked'):
            loss = fcmae_step(model, imgs, mask, impl)
            found[impl] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                           if p.grad is not None})
    (loss_v, grads_v), (loss_d, grads_d) = found['visible'], found['dense_masked']
    if set(grads_v) != set(grads_d):
        return verdict(False, f'different parameters get gradients: '
                       f'{sorted(set(grads_v) ^ set(grads_d))[:5]}')
    errors = {'loss': scaled_error(loss_v, loss_d)}
    errors.update({f'grad:{n}': scaled_error(grads_v[n], grads_d[n]) for n in sorted(grads_v)})
    name, value = worst(errors)
    return verdict(value <= EXACT_TOL,
                   f'{arch} {size} px batch {batch}: loss {float(loss_v):.6f} vs '
                   f'{float(loss_d):.6f}; worst scaled error {value:.1e} ({name}) over '
                   f'{len(grads_v)} gradients, tolerance {EXACT_TOL:g}',
                   arch=arch, size=size, batch=batch, loss_visible=float(loss_v),
                   loss_dense_masked=float(loss_d), worst=name, worst_error=value,
                   errors=errors)


def backbone_train_step(model, x, amp_dtype=None):
    """Zero grads, forward (under autocast if ``amp_dtype``), the mean of every output,
    backward (the step of ``benchmarks/backbone_speed.py``)."""
    model.zero_grad(set_to_none=True)
    with autocast(x.device, amp_dtype):
        loss = sum(o.float().mean() for o in model(x))
    loss.backward()


def with_cp_pair(ctx: Context):
    import torch
    arch, size, batch = ctx.settings.memory
    _, plain = timm_and_ours(arch, ctx.device)
    _, checkpointed = timm_and_ours(arch, ctx.device, with_cp=True)
    torch.manual_seed(4)
    x = torch.randn(batch, 3, size, size, device=ctx.device)
    return plain.train(), checkpointed.train(), x


def check_with_cp_gradients(ctx: Context) -> Result:
    arch, size, batch = ctx.settings.memory
    with exact_float32():
        plain, checkpointed, x = ctx.cached(('with_cp', ctx.settings.memory),
                                            lambda: with_cp_pair(ctx))
        grads = {}
        for name, model in (('plain', plain), ('with_cp', checkpointed)):
            backbone_train_step(model, x)
            grads[name] = {n: p.grad.clone() for n, p in model.named_parameters()
                           if p.grad is not None}
    if set(grads['plain']) != set(grads['with_cp']):
        return verdict(False, 'with_cp changes which parameters get gradients')
    errors = {n: scaled_error(grads['with_cp'][n], g) for n, g in grads['plain'].items()}
    name, value = worst(errors)
    return verdict(value <= EXACT_TOL,
                   f'{arch} {size} px batch {batch}: worst scaled error {value:.1e} ({name}) '
                   f'over {len(errors)} gradients, tolerance {EXACT_TOL:g}',
                   arch=arch, size=size, batch=batch, worst=name, worst_error=value)


def toolbox_unavailable(scope: str, device) -> Optional[str]:
    """Why a Mask R-CNN (``mmdet``) / UperNet (``mmseg``) step cannot run here, or None."""
    from cnxv2_dense import DependencyError, require_toolbox
    try:
        require_toolbox(scope)
    except DependencyError as err:
        return f'{scope} not importable: {err}'
    try:
        import mmcv.ops  # noqa: F401
        importlib.import_module(f'{scope}.models')
    except ImportError as err:
        return (f'{scope}.models needs mmcv\'s compiled ops, which are not importable here '
                f'({err}); mmcv-lite (the offline wheelhouse) has none')
    if device.type == 'cuda' and scope == 'mmdet':
        import torch
        from mmcv.ops import RoIAlign
        try:
            RoIAlign((2, 2), 1.)(torch.zeros(1, 1, 4, 4, device=device),
                                 torch.tensor([[0., 0., 0., 3., 3.]], device=device))
        except (RuntimeError, NotImplementedError) as err:
            return f'mmcv\'s ops are compiled without CUDA ({err})'
    return None


def toolbox_model(scope: str, config: str, arch: str, side: int):
    """A shipped config's model with ``arch``, no pretrained file and BN for SyncBN."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from cnxv2_dense.arch import ARCH_SETTINGS
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    dims = ARCH_SETTINGS[arch]['dims']
    cfg.model.backbone.arch = arch
    cfg.model.backbone.init_cfg = None
    if scope == 'mmdet':
        cfg.model.neck.in_channels = dims
    else:
        cfg.model.decode_head.in_channels = dims
        cfg.model.auxiliary_head.in_channels = dims[2]
        cfg.model.data_preprocessor.size = (side, side)
        cfg.model.test_cfg = dict(mode='slide', crop_size=(side, side),
                                  stride=(side * 2 // 3, side * 2 // 3))
    replace_type(cfg.model, 'SyncBN', 'BN')  # SyncBN needs a distributed run
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(cfg.model)
    model.init_weights()
    return model, cfg


def total_loss(losses: Dict[str, Any]):
    return sum(v if not isinstance(v, (list, tuple)) else sum(v)
               for k, v in losses.items() if 'loss' in k)


def backbone_grad_nonzero(model) -> bool:
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0)
               for n, p in model.named_parameters() if n.startswith('backbone.'))


def check_mask_rcnn(ctx: Context) -> Result:
    import torch
    why_not = toolbox_unavailable('mmdet', ctx.device)
    if why_not:
        return skipped(why_not)
    from mmdet.testing import demo_mm_inputs
    arch, side, batch = ctx.settings.toolbox
    torch.manual_seed(5)
    model, _ = toolbox_model('mmdet', 'mask_rcnn_cnxv2_t_coco.py', arch, side)
    model = model.to(ctx.device).train()
    amp = ctx.amp_dtype if ctx.is_cuda else None  # the configs train with AMP (GPU only)
    packed = demo_mm_inputs(batch_size=batch, image_shapes=[(3, side, side)] * batch,
                            num_items=[3] * batch, num_classes=10, with_mask=True)
    start = time.perf_counter()
    data = model.data_preprocessor(packed, True)
    with autocast(ctx.device, amp):
        losses = model(**data, mode='loss')
    loss = total_loss(losses)
    loss.backward()
    synchronize(ctx.device)
    train_s = time.perf_counter() - start
    finite = bool(torch.isfinite(loss))
    grads = backbone_grad_nonzero(model)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    synchronize(ctx.device)
    predict_s = time.perf_counter() - start
    shapes_ok = len(results) == batch and all(
        r.pred_instances.bboxes.shape[1:] == (4,)
        and len(r.pred_instances.masks) == len(r.pred_instances.bboxes) for r in results)
    return verdict(finite and grads and shapes_ok,
                   f'Mask R-CNN, {arch} backbone, {batch} x {side} px, '
                   f'{"AMP " + str(amp).replace("torch.", "") if amp else "fp32"}: loss '
                   f'{float(loss):.3f} ({"finite" if finite else "NOT FINITE"}), backbone '
                   f'gradients {"non-zero" if grads else "ZERO"}, predict '
                   f'{"gives boxes and masks" if shapes_ok else "WRONG OUTPUT"} '
                   f'(first steps {train_s:.2f} s / {predict_s:.2f} s)',
                   arch=arch, side=side, batch=batch, losses={k: float(total_loss({k: v}))
                                                              for k, v in losses.items()
                                                              if 'loss' in k},
                   train_step_s=train_s, predict_step_s=predict_s)


def check_upernet(ctx: Context) -> Result:
    import torch
    why_not = toolbox_unavailable('mmseg', ctx.device)
    if why_not:
        return skipped(why_not)
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    arch, side, batch = ctx.settings.toolbox
    torch.manual_seed(6)
    model, cfg = toolbox_model('mmseg', 'upernet_cnxv2_t_ade20k.py', arch, side)
    model = model.to(ctx.device).train()
    num_classes = cfg.model.decode_head.num_classes
    amp = ctx.amp_dtype if ctx.is_cuda else None

    def sample(h: int, w: int, with_label: bool) -> 'SegDataSample':
        item = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        if with_label:
            item.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
        return item
    packed = dict(inputs=[torch.randint(0, 256, (3, side, side), dtype=torch.uint8)
                          for _ in range(batch)],
                  data_samples=[sample(side, side, True) for _ in range(batch)])
    start = time.perf_counter()
    data = model.data_preprocessor(packed, True)
    with autocast(ctx.device, amp):
        losses = model(**data, mode='loss')
    loss = total_loss(losses)
    loss.backward()
    synchronize(ctx.device)
    train_s = time.perf_counter() - start
    finite = bool(torch.isfinite(loss))
    grads = backbone_grad_nonzero(model)
    model.eval()
    big = side + side // 2  # more than one sliding window
    start = time.perf_counter()
    with torch.no_grad():
        result, = model.test_step(dict(
            inputs=[torch.randint(0, 256, (3, big, side), dtype=torch.uint8)],
            data_samples=[sample(big, side, False)]))
    synchronize(ctx.device)
    predict_s = time.perf_counter() - start
    shape_ok = tuple(result.pred_sem_seg.data.shape) == (1, big, side)
    return verdict(finite and grads and shape_ok,
                   f'UperNet, {arch} backbone, {batch} x {side} px, '
                   f'{"AMP " + str(amp).replace("torch.", "") if amp else "fp32"}: loss '
                   f'{float(loss):.3f} ({"finite" if finite else "NOT FINITE"}), backbone '
                   f'gradients {"non-zero" if grads else "ZERO"}, sliding-window predict '
                   f'{"gives the full map" if shape_ok else "WRONG SHAPE"} '
                   f'(first steps {train_s:.2f} s / {predict_s:.2f} s)',
                   arch=arch, side=side, batch=batch, train_step_s=train_s,
                   predict_step_s=predict_s)


# ----------------------------------------------------------------------------- measurements
def check_fcmae_speedup(ctx: Context, precision: str) -> Result:
    import torch
    over = ctx.over_budget()
    if over:
        return over
    arch, size, batch = ctx.settings.fcmae_speed
    amp = ctx.amp_dtype if precision == 'amp' else None
    model = ctx.cached(('fcmae', ctx.settings.fcmae_speed),
                       lambda: fcmae_model(arch, ctx.settings.fcmae_decoder_dim, ctx.device))
    torch.manual_seed(7)
    imgs = torch.randn(batch, 3, size, size, device=ctx.device)
    mask = model.gen_random_mask(imgs)
    steps = {impl: timed(ctx.device, functools.partial(fcmae_step, model, imgs, mask, impl, amp))
             for impl in ('visible', 'dense_masked')}
    times = interleave(steps, ctx.settings.rounds, ctx.settings.warmup)
    medians = {impl: median_ms(values) for impl, values in times.items()}
    ratio = medians['dense_masked'] / medians['visible']
    return Result(MEASURED, f'{arch} {size} px batch {batch}: dense-masked '
                  f'{medians["dense_masked"]:.1f} ms / visible {medians["visible"]:.1f} ms = '
                  f'{ratio:.2f}x (CPU figure: 2.5x)',
                  dict(arch=arch, size=size, batch=batch, precision=precision,
                       amp_dtype=str(amp).replace('torch.', '') if amp else None,
                       median_ms=medians, ratio=ratio,
                       times_ms={k: [t * 1000 for t in v] for k, v in times.items()}))


def speed_models(arch: str, device) -> Dict[str, Any]:
    """timm as a user creates it, and ours on its weights in each layout."""
    reference, channels_last = timm_and_ours(arch, device, grn_std=0., channels_last=True)
    _, nchw = timm_and_ours(arch, device, grn_std=0., channels_last=False)
    return dict(timm=reference, ours_channels_last=channels_last, ours_nchw=nchw)


def check_speed(ctx: Context, case: Tuple[str, int, int], mode: str, precision: str,
                benchmark: bool) -> Result:
    import torch
    if benchmark and not ctx.is_cuda:
        return skipped('torch.backends.cudnn.benchmark (cuDNN autotuning) applies on CUDA only')
    over = ctx.over_budget()
    if over:
        return over
    make_step = load_benchmark('backbone_speed').make_step
    arch, size, batch = case
    amp = ctx.amp_dtype if precision == 'amp' else None
    models = ctx.cached(('speed', arch), lambda: speed_models(arch, ctx.device))
    torch.manual_seed(8)
    x = torch.randn(batch, 3, size, size, device=ctx.device)  # NCHW, as a data loader gives
    with cudnn_benchmark(benchmark):
        steps = {name: make_step(model, name, x, mode, amp) for name, model in models.items()}
        times = interleave(steps, ctx.settings.rounds, ctx.settings.warmup)
    medians = {name: median_ms(values) for name, values in times.items()}
    timm_ms, cl_ms, nchw_ms = (medians[k] for k in ('timm', 'ours_channels_last', 'ours_nchw'))
    ratios = dict(timm_over_channels_last=timm_ms / cl_ms, timm_over_nchw=timm_ms / nchw_ms,
                  nchw_over_channels_last=nchw_ms / cl_ms)
    return Result(MEASURED,
                  f'timm {timm_ms:.1f} ms; ours channels-last {cl_ms:.1f} ms '
                  f'({ratios["timm_over_channels_last"]:.2f}x timm), NCHW {nchw_ms:.1f} ms '
                  f'({ratios["timm_over_nchw"]:.2f}x timm)',
                  dict(arch=arch, size=size, batch=batch, mode=mode, precision=precision,
                       amp_dtype=str(amp).replace('torch.', '') if amp else None,
                       cudnn_benchmark=benchmark, median_ms=medians, ratio=ratios,
                       times_ms={k: [t * 1000 for t in v] for k, v in times.items()}))


def check_memory(ctx: Context, precision: str) -> Result:
    import torch
    over = ctx.over_budget()
    if over:
        return over
    arch, size, batch = ctx.settings.memory
    amp = ctx.amp_dtype if precision == 'amp' else None
    plain, checkpointed, x = ctx.cached(('with_cp', ctx.settings.memory),
                                        lambda: with_cp_pair(ctx))
    peaks = {}
    for name, model in (('plain', plain), ('with_cp', checkpointed)):
        backbone_train_step(model, x, amp)  # warm-up: cuDNN workspaces, autocast casts
        model.zero_grad(set_to_none=True)
        if ctx.is_cuda:
            synchronize(ctx.device)
            torch.cuda.reset_peak_memory_stats(ctx.device)
            base = torch.cuda.memory_allocated(ctx.device)
        backbone_train_step(model, x, amp)
        if ctx.is_cuda:
            synchronize(ctx.device)
            peak = torch.cuda.max_memory_allocated(ctx.device)
            peaks[name] = dict(peak_mib=peak / 2 ** 20, step_mib=(peak - base) / 2 ** 20)
        model.zero_grad(set_to_none=True)
    if not ctx.is_cuda:
        return skipped('CUDA not available: torch.cuda.max_memory_allocated measures CUDA memory '
                       'only (the training steps with and without with_cp ran)')
    ratio = peaks['plain']['step_mib'] / peaks['with_cp']['step_mib']
    return Result(MEASURED,
                  f'{arch} {size} px batch {batch}: a training step allocates up to '
                  f'{peaks["plain"]["step_mib"]:.0f} MiB without with_cp, '
                  f'{peaks["with_cp"]["step_mib"]:.0f} MiB with it ({ratio:.2f}x less; peaks '
                  f'{peaks["plain"]["peak_mib"]:.0f} / {peaks["with_cp"]["peak_mib"]:.0f} MiB '
                  'with weights)',
                  dict(arch=arch, size=size, batch=batch, precision=precision,
                       amp_dtype=str(amp).replace('torch.', '') if amp else None, peaks=peaks,
                       ratio=ratio))


def geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def check_layout_verdict(ctx: Context) -> Result:
    from cnxv2_dense.models import CHANNELS_LAST_DEVICES
    rows = [r for r in ctx.results if r['name'].startswith('speed_') and r['status'] == MEASURED]
    if not rows:
        return skipped('no speed row was measured')
    by = {}
    for mode in MODES:
        for precision in PRECISIONS:
            values = [r['details']['ratio']['nchw_over_channels_last'] for r in rows
                      if (r['details']['mode'], r['details']['precision']) == (mode, precision)]
            if values:
                by[f'{mode}_{precision}'] = geomean(values)
    overall = geomean([r['details']['ratio']['nchw_over_channels_last'] for r in rows])
    faster = 'channels-last' if overall > 1 else 'NCHW'
    default = 'channels-last' if ctx.device.type in CHANNELS_LAST_DEVICES else 'NCHW'
    agrees = faster == default
    cells = ', '.join(f'{k} {v:.2f}x' for k, v in by.items())
    note = ('; --quick: toy sizes, not a figure to set a default by'
            if ctx.settings.speed_cases == QUICK.speed_cases else '')
    return Result(MEASURED,
                  f'NCHW time / channels-last time, geometric mean of {len(rows)} speed rows: '
                  f'{overall:.2f}x ({cells}): {faster} is faster here; the {ctx.device.type} '
                  f'default (CHANNELS_LAST_DEVICES) is {default}'
                  f'{"" if agrees else ", which this measurement does not support"}{note}',
                  dict(ratio=overall, by_mode_precision=by, faster=faster, default=default,
                       agrees_with_default=agrees, rows=len(rows)))


# ----------------------------------------------------------------------------- the run
def plan(settings: Settings) -> List[Check]:
    """Every check of a run, in order (correctness first)."""
    checks = [Check('timm_parity_fp32', CORRECTNESS, check_timm_parity)]
    for large in (False, True):  # (the models are built once for each input scale)
        for dtype_name in LOW_PRECISION:
            checks.append(Check(f'backbone_autocast_{dtype_name}{"_large" if large else ""}',
                                CORRECTNESS, functools.partial(check_backbone_autocast,
                                                               dtype_name=dtype_name,
                                                               large=large)))
    for dtype_name in ('float32',) + LOW_PRECISION:
        checks.append(Check(f'grn_fused_{dtype_name}', CORRECTNESS,
                            functools.partial(check_grn, dtype_name=dtype_name)))
    checks += [Check('fcmae_paths_agree', CORRECTNESS, check_fcmae_paths),
               Check('with_cp_gradients', CORRECTNESS, check_with_cp_gradients),
               Check('mask_rcnn_steps', CORRECTNESS, check_mask_rcnn),
               Check('upernet_steps', CORRECTNESS, check_upernet)]
    for precision in PRECISIONS:
        checks.append(Check(f'fcmae_speedup_{precision}', MEASUREMENT,
                            functools.partial(check_fcmae_speedup, precision=precision)))
    for case in settings.speed_cases:
        arch, size, batch = case
        for mode in MODES:
            for precision in PRECISIONS:
                for benchmark in (False, True):
                    name = (f'speed_{arch}{size}_b{batch}_{mode}_{precision}'
                            f'{"_cudnn_benchmark" if benchmark else ""}')
                    checks.append(Check(name, MEASUREMENT, functools.partial(
                        check_speed, case=case, mode=mode, precision=precision,
                        benchmark=benchmark)))
    for precision in PRECISIONS:
        checks.append(Check(f'memory_with_cp_{precision}', MEASUREMENT,
                            functools.partial(check_memory, precision=precision)))
    checks.append(Check('layout_verdict', MEASUREMENT, check_layout_verdict))
    return checks


def run_check(ctx: Context, check: Check) -> Dict[str, Any]:
    start = time.monotonic()
    print(f'[gpu_check] {check.name} ...', flush=True)
    try:
        result = check.run(ctx)
    except Exception as err:  # noqa: BLE001  (one broken check must not end the run)
        result = Result(ERROR, f'{type(err).__name__}: {err}'.splitlines()[0][:300],
                        dict(traceback=traceback.format_exc(limit=8)[-4000:]))
    record = dict(name=check.name, kind=check.kind, status=result.status,
                  summary=result.summary, seconds=round(time.monotonic() - start, 3),
                  details=result.details)
    print(f'[gpu_check] {check.name}: {result.status}: {result.summary}', flush=True)
    return record


def git_commit() -> Optional[str]:
    if shutil.which('git') is None or not osp.isdir(osp.join(ROOT, '.git')):
        return None
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
                                capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=ROOT, text=True, capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ('+dirty' if dirty else '')) or None


def dist_version(*names: str) -> Optional[str]:
    for name in names:
        try:
            return f'{importlib.metadata.version(name)}' + (f' ({name})' if len(names) > 1 else '')
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def environment(device) -> Dict[str, Any]:
    """The machine and software this run ran on."""
    import torch

    import cnxv2_dense
    from cnxv2_dense.models import CHANNELS_LAST_DEVICES
    info: Dict[str, Any] = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        python=platform.python_version(), platform=platform.platform(),
        cpu_count=os.cpu_count(), device=str(device), torch=torch.__version__,
        cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
        timm=dist_version('timm'), mmengine=dist_version('mmengine'),
        mmcv=dist_version('mmcv', 'mmcv-lite'), mmdet=dist_version('mmdet'),
        mmsegmentation=dist_version('mmsegmentation'), onnxruntime=dist_version('onnxruntime'),
        cnxv2_dense=cnxv2_dense.__version__, commit=git_commit(),
        channels_last_devices=list(CHANNELS_LAST_DEVICES),
        float32_matmul_precision=torch.get_float32_matmul_precision(),
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
        cudnn_depthwise_kernel=getattr(torch.backends.cudnn, 'depthwise_kernel', None))
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, capability=f'{props.major}.{props.minor}',
                    memory_gib=round(props.total_memory / 2 ** 30, 1),
                    multiprocessors=props.multi_processor_count, driver=nvidia_driver())
    else:
        info.update(device_name=platform.processor() or platform.machine(), driver=None)
    return info


def nvidia_driver() -> Optional[str]:
    if shutil.which('nvidia-smi') is None:
        return None
    try:
        out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                             text=True, capture_output=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def jsonable(value: Any) -> Any:
    """Non-finite floats as strings (strict JSON has none); tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def markdown(report: Dict[str, Any]) -> str:
    env = report['environment']
    lines = [f'# GPU check: {env["device_name"]} ({env["device"]})', '',
             f'torch {env["torch"]} (CUDA {env["cuda"]}, cuDNN {env["cudnn"]}), driver '
             f'{env["driver"]}, timm {env["timm"]}, mmengine {env["mmengine"]}, mmcv '
             f'{env["mmcv"]}, Python {env["python"]}; cnxv2_dense {env["cnxv2_dense"]} at '
             f'{env["commit"]}; {env["date"]}; `{report["command"]}` in '
             f'{report["wall_s"]:.0f} s.', '',
             '| check | status | result |', '|---|---|---|']
    for r in report['checks']:
        lines.append(f'| {r["name"]} | {r["status"]} | {r["summary"].replace("|", "/")} |')
    rows = [r for r in report['checks'] if r['name'].startswith('speed_')
            and r['status'] == MEASURED]
    if rows:
        amp = sorted({r['details']['amp_dtype'] for r in rows if r['details']['amp_dtype']})
        lines += ['', 'Speed against timm: median ms per step; x timm = timm time / ours (> 1: '
                  'faster than timm); NCHW / CL = ours NCHW time / ours channels-last time (> 1: '
                  f'channels-last faster); amp = autocast {", ".join(amp) or "-"}.', '',
                  '| case | mode | precision | cudnn.benchmark | timm ms | ours CL ms | x timm '
                  '| ours NCHW ms | x timm | NCHW / CL |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        for r in rows:
            d, m, q = r['details'], r['details']['median_ms'], r['details']['ratio']
            lines.append(f'| {d["arch"]} {d["size"]} px b{d["batch"]} | {d["mode"]} | '
                         f'{d["precision"]} | {"on" if d["cudnn_benchmark"] else "off"} | '
                         f'{m["timm"]:.1f} | {m["ours_channels_last"]:.1f} | '
                         f'{q["timm_over_channels_last"]:.2f} | {m["ours_nchw"]:.1f} | '
                         f'{q["timm_over_nchw"]:.2f} | {q["nchw_over_channels_last"]:.2f} |')
    counts = report['counts']
    lines += ['', 'Totals: ' + ', '.join(f'{v} {k}' for k, v in counts.items() if v) + '.']
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------- dependencies
def lock_version(dist: str) -> Optional[str]:
    """The ``dist==VERSION`` of requirements/runtime.txt (the tested lock), or None."""
    with open(osp.join(ROOT, 'requirements', 'runtime.txt')) as file:
        for line in file:
            found = re.match(rf'^{re.escape(dist)}==([^\s#]+)', line.strip())
            if found:
                return found.group(1)
    return None


def wheelhouse_requirements() -> List[str]:
    """Pinned specs of :data:`WHEELHOUSE_PACKAGES`: mmengine and mmcv from the lock, the rest at
    the versions installed here (unpinned where absent)."""
    specs = []
    for dist in WHEELHOUSE_PACKAGES:
        version = lock_version('mmcv' if dist == 'mmcv-lite' else dist)
        if version is None:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = None
        specs.append(f'{dist}=={version}' if version else dist)
    return specs


def ensure_dependencies(wheelhouse: Optional[str], site: Optional[str]) -> List[str]:
    """Make torch, timm, mmengine and mmcv importable, from ``wheelhouse`` if needed.

    Returns:
        list[str]: What was done, for the report.

    Raises:
        SystemExit: Something is missing and cannot be installed; the message says what to do.
    """
    for module, hint in (('torch', 'install PyTorch (https://pytorch.org/get-started/locally/)'),
                         ('timm', 'pip install timm (or carry its wheel)')):
        if importlib.util.find_spec(module) is None:
            raise SystemExit(f'gpu_check needs {module}, which is not installed: {hint}.')
    missing = [m for m in ('mmengine', 'mmcv') if importlib.util.find_spec(m) is None]
    if not missing:
        return []
    if wheelhouse is None:
        raise SystemExit(
            f'gpu_check needs {" and ".join(missing)} (cnxv2_dense imports them), which are not '
            'installed. On a machine with the network, pip install -r requirements/runtime.txt; '
            'on an offline one, build the wheels beforehand where the network is '
            '(bash benchmarks/make_offline_wheelhouse.sh writes build/wheelhouse), take that '
            'folder along and pass --wheelhouse build/wheelhouse.')
    wheels = sorted(glob.glob(osp.join(wheelhouse, '*.whl')))
    if not wheels:
        raise SystemExit(f'--wheelhouse {wheelhouse}: no .whl files there; build it with '
                         'bash benchmarks/make_offline_wheelhouse.sh')
    site = site or tempfile.mkdtemp(prefix='cnxv2_gpu_check_site_')
    command = [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-index', '--no-deps',
               '--no-compile', '--disable-pip-version-check', '--target', site] + wheels
    proc = subprocess.run(command, text=True, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f'installing the wheelhouse failed ({" ".join(command)}):\n'
                         f'{proc.stdout[-2000:]}{proc.stderr[-2000:]}')
    sys.path.insert(0, site)
    importlib.invalidate_caches()
    try:
        importlib.import_module('cnxv2_dense')
    except ImportError as err:
        raise SystemExit(f'cnxv2_dense still does not import after installing {wheelhouse} into '
                         f'{site}: {err}. Add the missing distribution to WHEELHOUSE_PACKAGES in '
                         'benchmarks/gpu_check.py and rebuild the wheelhouse.') from err
    return [f'installed {len(wheels)} wheels from {wheelhouse} into {site}']


# ----------------------------------------------------------------------------- entry point
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', help='folder for gpu_check.json and gpu_check.md')
    parser.add_argument('--device', default='cuda',
                        help='cuda (default), cuda:N or cpu (cpu checks the script itself)')
    parser.add_argument('--quick', action='store_true',
                        help='toy sizes and few repeats (the same code paths, in under a minute '
                             'on a CPU)')
    parser.add_argument('--only', help='comma-separated name prefixes: run only those checks '
                                       '(layout_verdict uses the speed rows of the same run)')
    parser.add_argument('--budget-s', type=float,
                        help='seconds after which measurements still to start are skipped '
                             f'(default {FULL.budget_s:.0f}, {QUICK.budget_s:.0f} with --quick)')
    parser.add_argument('--wheelhouse', help='folder of wheels (benchmarks/'
                        'make_offline_wheelhouse.sh) to install mmengine / mmcv from if missing')
    parser.add_argument('--site', help='where --wheelhouse installs to (default: a new '
                                       'temporary folder)')
    parser.add_argument('--print-wheelhouse-requirements', action='store_true',
                        help='print the pinned packages of the offline wheelhouse and exit')
    args = parser.parse_args(argv)
    if not (args.print_wheelhouse_requirements or args.out):
        parser.error('--out DIR is required')
    return args


def run(args: argparse.Namespace, argv: Sequence[str]) -> Dict[str, Any]:
    """Every planned check on ``args.device``; writes and returns the report."""
    notes = ensure_dependencies(args.wheelhouse, args.site)
    import torch

    import cnxv2_dense  # noqa: F401  (checks the versions of torch, mmengine and mmcv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(f'--device {args.device}: CUDA is not available to torch '
                         f'{torch.__version__} (built for CUDA {torch.version.cuda}). Run on a '
                         'GPU machine, or pass --device cpu to check the script\'s own paths.')
    if device.type == 'cuda':
        # NOTE: an index is needed: torch.cuda.set_device and the memory statistics refuse a
        # bare 'cuda'.
        if device.index is None:
            device = torch.device('cuda', torch.cuda.current_device())
        torch.cuda.set_device(device)
    elif device.type != 'cpu':
        raise SystemExit(f'--device {args.device}: expected cuda, cuda:N or cpu')
    settings = QUICK if args.quick else FULL
    budget = settings.budget_s if args.budget_s is None else args.budget_s
    settings = Settings(**{**asdict(settings), 'budget_s': budget})
    start = time.monotonic()
    ctx = Context(device=device, settings=settings, deadline=start + budget)
    report: Dict[str, Any] = dict(
        command='python benchmarks/gpu_check.py ' + ' '.join(argv),
        environment=environment(device), settings=asdict(settings), notes=notes, checks=[])
    checks = plan(settings)
    if args.only:
        prefixes = tuple(p.strip() for p in args.only.split(',') if p.strip())
        checks = [c for c in checks if c.name.startswith(prefixes)]
        if not checks:
            raise SystemExit(f'--only {args.only}: no check starts with that; the checks are '
                             f'{", ".join(c.name for c in plan(settings))}')
    for check in checks:
        record = run_check(ctx, check)
        ctx.results.append(record)
        report['checks'].append(record)
    ctx.cached(None, lambda: None)  # free the last models
    report['wall_s'] = round(time.monotonic() - start, 1)
    report['counts'] = {status: sum(r['status'] == status for r in report['checks'])
                        for status in (PASS, FAIL, ERROR, MEASURED, SKIPPED)}
    report['failed'] = [r['name'] for r in report['checks'] if r['status'] in (FAIL, ERROR)]
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'gpu_check.json'), 'w') as file:
        json.dump(jsonable(report), file, indent=1)
    table = markdown(report)
    with open(osp.join(args.out, 'gpu_check.md'), 'w') as file:
        file.write(table)
    print('\n' + table, flush=True)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the checks; 1 if one failed or broke, else 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.print_wheelhouse_requirements:
        print('\n'.join(wheelhouse_requirements()))
        return 0
    report = run(args, argv)
    if report['failed']:
        print(f'[gpu_check] FAILED: {", ".join(report["failed"])}', flush=True)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
