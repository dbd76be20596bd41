import pytest
import torch
from mmengine.registry import WEIGHT_INITIALIZERS

from cnxv2_dense.models import ARCH_SETTINGS, GRN, ConvNeXtV2, default_num_layers, get_layer_id

from .conftest import cpu_autocast_supports


def build_on_meta(**kwargs) -> ConvNeXtV2:
    with torch.device('meta'):
        return ConvNeXtV2(**kwargs)


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_every_arch_gives_four_strided_outputs(arch):
    # Built on the meta device: shapes are checked without allocating the 660M-param huge model.
    model = build_on_meta(arch=arch)
    with torch.device('meta'):
        outs = model(torch.empty(2, 3, 64, 96))
    dims = ARCH_SETTINGS[arch]['dims']
    assert [tuple(o.shape) for o in outs] == [
        (2, dims[i], 64 // 2 ** (i + 2), 96 // 2 ** (i + 2)) for i in range(4)]


@pytest.mark.parametrize('out_indices,expected', [
    ((0, 1, 2, 3), (0, 1, 2, 3)), (3, (3,)), ((-1,), (3,)), ((1, -2), (1, 2)), ([2, 0], (0, 2))])
def test_out_indices(tiny_arch, out_indices, expected):
    model = ConvNeXtV2(arch=tiny_arch, out_indices=out_indices)
    assert model.out_indices == expected
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [tiny_arch['dims'][i] for i in expected]
    assert {n for n, _ in model.named_children() if n.startswith('norm')} == {
        f'norm{i}' for i in expected}


def test_out_indices_list_is_not_mutated(tiny_arch):
    indices = [-1, 0]
    ConvNeXtV2(arch=tiny_arch, out_indices=indices)
    assert indices == [-1, 0]


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='tiniest'), "choose one of ['atto', 'base', 'femto', 'huge', 'large', 'nano', "
                           "'pico', 'tiny']"),
    (dict(arch=dict(depths=[1, 1, 1], dims=[8, 8, 8])), 'needs 4 depths'),
    (dict(arch=dict(depths=[1, 1, 1, 1])), 'exactly the keys depths and dims'),
    (dict(out_indices=(4,)), 'out_indices must be in [-4, 3]'),
    (dict(out_indices=(-5,)), 'out_indices must be in [-4, 3]'),
    (dict(frozen_stages=5), 'frozen_stages must be in [-1, 4]'),
    (dict(drop_path_rate=1.0), 'drop_path_rate must be in [0, 1)'),
])
def test_bad_arguments_name_the_valid_values(kwargs, message):
    with pytest.raises(ValueError) as err:
        build_on_meta(**kwargs)
    assert message in str(err.value)


def test_inputs_not_multiple_of_32_work_and_too_small_ones_fail_clearly(tiny_arch):
    model = ConvNeXtV2(arch=tiny_arch)
    outs = model(torch.randn(1, 3, 70, 45))
    assert [tuple(o.shape[-2:]) for o in outs] == [(17, 11), (8, 5), (4, 2), (2, 1)]
    with pytest.raises(ValueError, match='at least 32 px'):
        model(torch.randn(1, 3, 16, 64))


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 4])
def test_frozen_stages_stay_frozen_and_in_eval(tiny_arch, frozen_stages):
    model = ConvNeXtV2(arch=tiny_arch, frozen_stages=frozen_stages, drop_path_rate=0.1)
    model.train()
    for name, param in model.named_parameters():
        frozen = (frozen_stages >= 0 and name.startswith('downsample_layers.0.')) or any(
            name.startswith((f'downsample_layers.{i}.', f'stages.{i}.'))
            for i in range(max(frozen_stages, 0)))
        assert param.requires_grad is not frozen, name
    for name, module in model.named_modules():
        if name.startswith(('downsample_layers.', 'stages.')):
            stage = int(name.split('.')[1])
            frozen = (frozen_stages >= 0 and name.startswith('downsample_layers.0')) or \
                stage < frozen_stages
            assert module.training is not frozen, name
    assert model.train() is model


def run_and_compare(plain, variant, x, output_tol=None, grad_tol=None):
    """Run both models (same weights) on ``x`` and assert equal outputs, input gradients and
    parameter gradients; returns the variant's outputs. Tolerances default to assert_close's."""
    results = []
    for model in (plain, variant):
        model.zero_grad()
        inp = x.clone().requires_grad_()
        outs = model(inp)
        sum(o.square().mean() for o in outs).backward()
        results.append((outs, inp.grad, {n: p.grad for n, p in model.named_parameters()}))
    (outs_a, dx_a, grads_a), (outs_b, dx_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, **(output_tol or {}))
    torch.testing.assert_close(dx_a, dx_b, **(grad_tol or {}))
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name, **(grad_tol or {}))
    return outs_b


def test_with_cp_gives_the_same_outputs_and_gradients(tiny_arch):
    plain = ConvNeXtV2(arch=tiny_arch, drop_path_rate=0.0)
    plain.init_weights()
    ckpt = ConvNeXtV2(arch=tiny_arch, drop_path_rate=0.0, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    run_and_compare(plain, ckpt, torch.randn(2, 3, 64, 64))


def test_channels_last_input_gives_the_same_outputs(tiny_arch):
    model = ConvNeXtV2(arch=tiny_arch).eval()
    model.init_weights()
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    out = model(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(ref, out):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_outputs_keep_the_input_memory_format(tiny_arch):
    # Downstream C++ ops (mmcv's CPU RoIAlign) read raw NCHW memory: a channels-last-strided
    # output would be silently misread.
    model = ConvNeXtV2(arch=tiny_arch).eval()
    x = torch.randn(1, 3, 64, 64)
    assert all(o.is_contiguous() for o in model(x))
    x_last = x.contiguous(memory_format=torch.channels_last)
    assert all(o.is_contiguous(memory_format=torch.channels_last) for o in model(x_last))


@pytest.mark.parametrize('channels_last', [True, None])
def test_channels_last_option_matches_nchw_outputs_and_gradients(tiny_arch, channels_last):
    torch.manual_seed(0)
    plain = ConvNeXtV2(arch=tiny_arch, channels_last=False)
    plain.init_weights()
    last = ConvNeXtV2(arch=tiny_arch, channels_last=channels_last)
    last.load_state_dict(plain.state_dict())
    outs = run_and_compare(plain, last, torch.randn(2, 3, 64, 64),
                           output_tol=dict(rtol=1e-5, atol=1e-5),
                           grad_tol=dict(rtol=1e-5, atol=1e-6))
    # NCHW in, NCHW out: safe for raw-memory ops like RoIAlign
    assert all(o.is_contiguous() for o in outs)


def test_default_layout_is_picked_per_device_and_the_flag_forces_one(tiny_arch):
    auto = build_on_meta(arch=tiny_arch)
    assert auto.channels_last is None  # what a config without the flag builds
    assert auto.memory_format_for('cpu') == torch.channels_last
    assert auto.memory_format_for(torch.device('cuda', 0)) == torch.channels_last
    assert auto.memory_format_for('mps') == torch.contiguous_format
    for flag, expected in [(True, torch.channels_last), (False, torch.contiguous_format)]:
        forced = build_on_meta(arch=tiny_arch, channels_last=flag)
        assert {forced.memory_format_for(d) for d in ('cpu', 'cuda', 'mps')} == {expected}


def test_default_backbone_runs_its_convolutions_channels_last_on_cpu(tiny_arch):
    model = ConvNeXtV2(arch=tiny_arch).eval()
    seen = []
    for conv in model.modules():
        if isinstance(conv, torch.nn.Conv2d):
            conv.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    outs = model(torch.randn(1, 3, 64, 64))
    assert len(seen) == 4 + sum(tiny_arch['depths'])  # stem, 3 downsamples, a dwconv per block
    assert all(t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
               for t in seen)
    assert all(o.is_contiguous() for o in outs)  # NCHW-contiguous out all the same


def use_reference_grn(model: torch.nn.Module) -> torch.nn.Module:
    """Switch every GRN of ``model`` to the autograd reference."""
    for module in model.modules():
        if isinstance(module, GRN):
            module.fused = False
    return model


@pytest.mark.parametrize('with_cp', [False, True])
def test_fused_grn_backbone_matches_the_autograd_reference(tiny_arch, with_cp):
    fused = ConvNeXtV2(arch=tiny_arch, with_cp=with_cp)
    fused.init_weights()
    for name, param in fused.named_parameters():
        if '.grn.' in name:
            torch.nn.init.normal_(param, std=0.5)
    reference = use_reference_grn(ConvNeXtV2(arch=tiny_arch, with_cp=with_cp))
    reference.load_state_dict(fused.state_dict())
    run_and_compare(reference, fused, torch.randn(2, 3, 64, 64),
                    output_tol=dict(rtol=0, atol=0), grad_tol=dict(rtol=1e-5, atol=1e-6))


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps for backward after ``model(x)`` (parameters
    excluded: they live anyway). Counted through saved-tensor hooks, so what gradient
    checkpointing keeps (each block's input) is counted too."""
    params = {p.data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outs = model(x)
    assert all(o.requires_grad for o in outs)
    return sum(storages.values())


def test_with_cp_saves_at_least_half_the_activation_memory():
    arch = dict(depths=[2, 2, 2, 2], dims=[16, 32, 64, 128])
    plain = ConvNeXtV2(arch=arch).train()
    ckpt = ConvNeXtV2(arch=arch, with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 128, 128, requires_grad=True)
    full, checkpointed = saved_activation_bytes(plain, x), saved_activation_bytes(ckpt, x)
    assert checkpointed > 0
    assert full >= 2 * checkpointed, (full, checkpointed)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_with_large_inputs_is_finite(tiny_arch, dtype):
    if not cpu_autocast_supports(dtype):
        pytest.skip(f'CPU autocast has no {dtype} in torch {torch.__version__}')
    model = ConvNeXtV2(arch=tiny_arch).eval()
    model.init_weights()
    for module in model.modules():
        if hasattr(module, 'gamma') and isinstance(module.gamma, torch.nn.Parameter):
            torch.nn.init.normal_(module.gamma, std=0.5)
    x = 1000 * torch.randn(1, 3, 128, 128)
    with torch.autocast('cpu', dtype=dtype):
        outs = model(x)
    assert all(torch.isfinite(o).all() for o in outs)


def test_v1_block_ablation_has_layer_scale_and_no_grn(tiny_arch):
    model = ConvNeXtV2(arch=tiny_arch, use_grn=False, layer_scale_init_value=1e-6)
    names = [n for n, _ in model.named_parameters()]
    assert not any('.grn.' in n for n in names)
    assert torch.allclose(model.stages[0][0].gamma, torch.full((8,), 1e-6))
    assert len(model(torch.randn(1, 3, 32, 32))) == 4


def test_init_is_trunc_normal_with_zero_bias_and_the_official_cut(tiny_arch):
    # The official code inits conv / linear weights with timm's trunc_normal_(std=.02), whose
    # cut is a=-2, b=2 in absolute value, i.e. +-100 std: in practice an untruncated N(0, .02).
    model = ConvNeXtV2(arch=dict(depths=[1, 1, 1, 1], dims=[64, 64, 64, 64]))
    model.init_weights()
    weight = model.stages[0][0].pwconv1.weight  # 256 x 64 = 16384 draws
    assert abs(weight.std().item() - 0.02) < 0.002
    # A cut at a few std (a = -2 * std, a common slip) would empty the tails. For N(0, s):
    # P(|w| > 2s) = 4.55%, P(|w| > 3s) = 0.27%; the bounds are 5 binomial standard deviations
    # for n = 16384 draws.
    beyond_2s = (weight.abs() > 2 * 0.02).double().mean().item()
    beyond_3s = (weight.abs() > 3 * 0.02).double().mean().item()
    assert 0.0374 < beyond_2s < 0.0536, beyond_2s
    assert 0.0007 < beyond_3s < 0.0047, beyond_3s
    # The cut itself (+-2 absolute) is never reached by std-.02 draws: check what is asked for.
    initializer = [c for c in model.init_cfg if c['type'] == 'TruncNormal']
    assert len(initializer) == 1
    built = WEIGHT_INITIALIZERS.build(initializer[0])
    assert (built.mean, built.std, built.a, built.b) == (0, .02, -2, 2)
    assert torch.all(model.stages[0][0].pwconv1.bias == 0)


def test_init_cfg_runs_through_mmengine_after_the_default_init(tiny_arch, tmp_path):
    source = ConvNeXtV2(arch=tiny_arch)
    source.init_weights()
    path = tmp_path / 'backbone.pth'
    pretrained = {k: v for k, v in source.state_dict().items() if not k.startswith('norm')}
    torch.save({'state_dict': pretrained}, path)  # without output norms, like an FCMAE export
    # mmengine applies the other entries first and the Pretrained one last, whatever the order.
    target = ConvNeXtV2(arch=tiny_arch, init_cfg=[
        dict(type='Pretrained', checkpoint=str(path)),
        dict(type='Constant', layer='LayerNorm', val=3., bias=0.)])
    assert [c['type'] for c in target.init_cfg] == ['TruncNormal', 'Constant',
                                                     'cnxv2_dense.PretrainedBackbone']
    target.init_weights()
    assert target.is_init
    for key, value in pretrained.items():  # loaded over the constant, LayerNorms included
        assert torch.equal(target.state_dict()[key], value), key
    assert torch.all(target.norm0.weight == 3.)  # not in the checkpoint: the constant stays
    # Without Pretrained, an entry overrides the default init of the layers it names.
    constant = ConvNeXtV2(arch=tiny_arch, init_cfg=dict(type='Constant', layer='Linear', val=.5,
                                                        bias=.1))
    constant.init_weights()
    assert torch.all(constant.stages[0][0].pwconv1.weight == .5)
    assert torch.all(constant.stages[0][0].pwconv1.bias == .1)
    assert abs(constant.stages[0][0].dwconv.weight.std().item() - 0.02) < 0.01  # default init


def test_pretrained_init_loads_our_own_checkpoint(tiny_arch, tmp_path):
    source = ConvNeXtV2(arch=tiny_arch)
    source.init_weights()
    path = tmp_path / 'backbone.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    target = ConvNeXtV2(arch=tiny_arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    target.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_pretrained_init_from_a_detector_checkpoint(tiny_arch, tmp_path):
    source = ConvNeXtV2(arch=tiny_arch)
    source.init_weights()
    path = tmp_path / 'detector.pth'
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(1)
    torch.save({'state_dict': state, 'meta': {}}, path)
    target = ConvNeXtV2(arch=tiny_arch, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    target.init_weights()
    torch.testing.assert_close(target.stages[2][1].pwconv1.weight, source.stages[2][1].pwconv1.weight)


@pytest.mark.parametrize('depths,expected', [([3, 3, 9, 3], 6), ([3, 3, 27, 3], 12),
                                             ([2, 2, 6, 2], 5), ([2, 2, 8, 2], 6)])
def test_default_num_layers(depths, expected):
    assert default_num_layers(depths) == expected


def test_unknown_decay_type_fails():
    with pytest.raises(ValueError, match="one of \\('layer_wise', 'stage_wise'\\)"):
        get_layer_id('stages.0.0.dwconv.weight', 6, 'block_wise')
