"""ONNX export of the backbone and of UperNet, their ONNX Runtime runner, float16, bad inputs.

References are independent of the export code: the PyTorch backbone on pixels normalised here,
mmseg's own ``EncoderDecoder`` (``encode_decode`` / ``predict`` with its data preprocessor and
sliding window), PyTorch's ``adaptive_avg_pool2d``, float16 arithmetic done by numpy, and
onnx's reference evaluator (numpy, every op in its declared dtype).
"""
import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from cnxv2_dense.datasets import SceneSpec, write_ade_shapes
from cnxv2_dense.deploy import ExportOptions, export_model
from cnxv2_dense.deploy.adaptive_pool import ExportableAdaptiveAvgPool2d
from cnxv2_dense.deploy.exporter import example_input
from cnxv2_dense.deploy.model_loading import build_model
from cnxv2_dense.models.layers import GRN

from .conftest import ROOT, TINY_ARCH, run_tool, trained_like_checkpoint

onnx = pytest.importorskip('onnx', reason='the [deploy] extra is part of the test environment')
ort = pytest.importorskip('onnxruntime')

PYTHON = sys.executable
SEG_DEMO = Path(ROOT) / 'configs' / 'upernet_cnxv2_demo_shapes.py'
MEAN = np.array([123.675, 116.28, 103.53], np.float32).reshape(1, 3, 1, 1)
STD = np.array([58.395, 57.12, 57.375], np.float32).reshape(1, 3, 1, 1)


def tiny_seg_config(folder: Path, data_root: Path, mode: str = 'whole') -> Path:
    """The segmentation demo with a tiny backbone and heads on 96 px images."""
    test_cfg = ("dict(mode='slide', crop_size=(64, 64), stride=(32, 32))" if mode == 'slide'
                else "dict(mode='whole')")
    config = folder / f'tiny_upernet_{mode}.py'
    config.write_text(f'''
_base_ = [{str(SEG_DEMO)!r}]
data_root = {str(data_root) + '/'!r}
model = dict(
    data_preprocessor=dict(size=(96, 96)),
    backbone=dict(arch=dict(_delete_=True, depths={TINY_ARCH['depths']}, dims={TINY_ARCH['dims']})),
    decode_head=dict(in_channels={TINY_ARCH['dims']}, channels=16, pool_scales=(1, 2, 3, 6)),
    auxiliary_head=dict(in_channels={TINY_ARCH['dims'][2]}, channels=16),
    test_cfg={test_cfg})
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                 dict(type='PackSegInputs')]
dataset = dict(data_root=data_root)
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
''')
    return config


@pytest.fixture(scope='module')
def seg_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('export_seg')
    data = root / 'data'
    write_ade_shapes(data, num_train=2, num_val=4, spec=SceneSpec(image_size=96), seed=5)
    config = tiny_seg_config(root, data)
    checkpoint = trained_like_checkpoint(config, root / 'iter_1.pth')
    return root, data, config, checkpoint


def session(path: Path):
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])


def normalised(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((pixels - MEAN) / STD)


# --- the pieces ---------------------------------------------------------------------------

@pytest.mark.parametrize('size_in, size_out', [(16, 3), (13, 6), (12, 2), (5, 1), (7, 7)])
def test_exportable_adaptive_pool_equals_torch(size_in, size_out):
    x = torch.randn(2, 3, size_in, size_in + 3)
    pool = ExportableAdaptiveAvgPool2d(size_out)
    torch.testing.assert_close(pool(x), torch.nn.functional.adaptive_avg_pool2d(x, size_out),
                               rtol=1e-5, atol=1e-6)


def test_the_export_grn_equals_grn_and_stays_finite_in_float16():
    """GRNForExport (the norm as sqrt(ReduceSum(x * x)) over H*W) gives GRN's values; on a
    float16 input whose squares overflow float16 its output is finite and equals GRN's."""
    from cnxv2_dense.deploy.grn_export import GRNForExport, use_export_grn
    grn = GRN(16)
    torch.nn.init.normal_(grn.gamma, std=0.5)
    torch.nn.init.normal_(grn.beta, std=0.5)
    export = GRNForExport.from_grn(grn)
    x = torch.randn(2, 5, 7, 16)
    torch.testing.assert_close(export(x), grn(x), rtol=1e-6, atol=1e-6)
    big = (300 * torch.randn(1, 16, 16, 16)).half()
    assert torch.isinf((big * big).sum(dim=(1, 2))).any()  # a float16 norm would overflow
    out = export(big)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), grn(big).float(), rtol=1e-3, atol=1e-2)
    block = torch.nn.Sequential(torch.nn.Linear(16, 16), GRN(16))
    use_export_grn(block)
    assert type(block[1]) is GRNForExport and block[1].gamma is not None


# --- backbone and segmentor parity ---------------------------------------------------------

def test_backbone_export_matches_pytorch_at_other_sizes_and_batches(seg_setup, tmp_path):
    _, _, config, checkpoint = seg_setup
    result = export_model(str(config), str(checkpoint), str(tmp_path),
                          ExportOptions(backbone_only=True, dynamic=True))
    assert result.check['passed'], result.check
    model = build_model(Config.fromfile(str(config)))
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    for batch, h, w in ((1, 96, 96), (3, 64, 160)):
        pixels = example_input((h, w), batch, seed=batch).numpy()
        ours = session(result.onnx_file).run(None, {'pixels': pixels})
        with torch.no_grad():
            reference = model.backbone(normalised(pixels).float())
        assert len(ours) == len(reference) == 4
        for got, ref in zip(ours, reference):
            assert got.shape == tuple(ref.shape)
            err = np.abs(got - ref.numpy()).max() / np.abs(ref.numpy()).max()
            assert err < 1e-4, (batch, h, w, err)


def test_segmentor_export_matches_mmseg_encode_decode(seg_setup, tmp_path):
    _, _, config, checkpoint = seg_setup
    result = export_model(str(config), str(checkpoint), str(tmp_path),
                          ExportOptions(dynamic=True))
    model = build_model(Config.fromfile(str(config)))
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    for batch, h, w in ((2, 96, 96), (1, 64, 128)):
        pixels = example_input((h, w), batch, seed=h).numpy()
        scores, labels = session(result.onnx_file).run(None, {'pixels': pixels})
        metas = [dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(h, w))] * batch
        with torch.no_grad():
            reference = model.encode_decode(normalised(pixels).float(), metas).numpy()
        assert scores.shape == reference.shape == (batch, 4, h, w)
        assert np.abs(scores - reference).max() / np.abs(reference).max() < 1e-4
        # labels are the argmax; a near-tie may flip, none did at this tolerance
        assert (labels == reference.argmax(1)).mean() > 0.999


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_onnxruntime_segmentor_predicts_what_mmseg_predicts(seg_setup, tmp_path, mode):
    """The runner's padding, sliding window, crop and resize to the original image = mmseg's."""
    from mmseg.registry import DATASETS

    from cnxv2_dense.deploy.runtime import build_onnx_model
    root, data, _, checkpoint = seg_setup
    config = tiny_seg_config(tmp_path, data, mode)
    result = export_model(str(config), str(checkpoint), str(tmp_path / 'out'),
                          ExportOptions(dynamic=mode == 'whole'))
    cfg = Config.fromfile(str(config))
    model = build_model(cfg)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    onnx_model = build_onnx_model(str(result.onnx_file), cfg)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    batch = dict(inputs=[dataset[i]['inputs'] for i in range(2)],
                 data_samples=[dataset[i]['data_samples'] for i in range(2)])
    with torch.no_grad():
        reference = model.test_step(copy.deepcopy(batch))
    ours = onnx_model.test_step(copy.deepcopy(batch))
    for got, ref in zip(ours, reference):
        ref_logits = ref.seg_logits.data
        assert got.seg_logits.data.shape == ref_logits.shape
        err = (got.seg_logits.data - ref_logits).abs().max() / ref_logits.abs().max()
        assert err < 1e-4
        assert (got.pred_sem_seg.data == ref.pred_sem_seg.data).float().mean() > 0.999


# --- float16 -------------------------------------------------------------------------------

def overflowing_checkpoint(config: Path, out: Path) -> Path:
    """Weights for which every GRN of the first stage sees activations of several hundred: past
    256, a square overflows float16 (65504), as in official ConvNeXt-V2 issue #66."""
    checkpoint = trained_like_checkpoint(config, out)
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    state['backbone.stages.0.0.pwconv1.weight'] *= 400.0
    torch.save({'state_dict': state}, checkpoint)
    return checkpoint


def grn_inputs(model, pixels: np.ndarray) -> list:
    captured = []
    hooks = [m.register_forward_hook(lambda mod, args, out: captured.append(args[0].detach()))
             for m in model.backbone.modules() if isinstance(m, GRN)]
    with torch.no_grad():
        model.backbone(normalised(pixels).float())
    for hook in hooks:
        hook.remove()
    return captured


def test_fp16_export_survives_where_a_naive_fp16_grn_overflows(seg_setup, tmp_path):
    _, _, config, _ = seg_setup
    checkpoint = overflowing_checkpoint(config, tmp_path / 'big.pth')
    model = build_model(Config.fromfile(str(config)))
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    pixels = example_input((96, 96), 1, seed=7).numpy()

    # The failure first: GRN's L2 norm over H x W in float16 arithmetic (square, sum, sqrt, as
    # a float16 engine computes it) overflows on this model's first GRN input.
    x = grn_inputs(model, pixels)[0].numpy()  # (N, H, W, C)
    assert np.abs(x).max() > 256
    with np.errstate(over='ignore'):
        x16 = x.astype(np.float16)
        naive_g = np.sqrt(np.sum(np.square(x16), axis=(1, 2), dtype=np.float16))
    assert not np.isfinite(naive_g).all()
    assert np.isfinite(np.linalg.norm(x.astype(np.float64), axis=(1, 2))).all()

    fp32 = export_model(str(config), str(checkpoint), str(tmp_path), ExportOptions())
    fp16 = export_model(str(config), str(checkpoint), str(tmp_path), ExportOptions(fp16=True))
    assert fp16.check['passed'], fp16.check
    ref_scores, _ = session(fp32.onnx_file).run(None, {'pixels': pixels})
    scores, labels = session(fp16.onnx_file).run(None, {'pixels': pixels})
    assert np.isfinite(scores).all()
    # float16 keeps 11 significant bits: each rounding is within 2^-11 = 4.9e-4 of the value,
    # and a few dozen of them compound through the network; measured 1e-3 here, bound 1e-2.
    assert np.abs(scores - ref_scores).max() / np.abs(ref_scores).max() < 1e-2
    assert (labels == ref_scores.argmax(1)).mean() > 0.99


def test_fp16_graph_keeps_grn_and_layernorm_statistics_in_fp32(seg_setup, tmp_path):
    """What keeps a float16 engine (TensorRT, CUDA / DirectML providers) from overflowing: every
    GRN norm and LayerNorm reads float32, every Conv / MatMul float16."""
    _, _, config, checkpoint = seg_setup
    result = export_model(str(config), str(checkpoint), str(tmp_path),
                          ExportOptions(fp16=True, backbone_only=True))
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(result.onnx_file))).graph
    dtypes = {v.name: v.type.tensor_type.elem_type
              for v in [*graph.value_info, *graph.input, *graph.output]}
    dtypes.update({init.name: init.data_type for init in graph.initializer})
    seen = {}
    for node in graph.node:
        if node.op_type in ('ReduceL2', 'ReduceSum', 'LayerNormalization', 'Conv', 'MatMul'):
            seen.setdefault(node.op_type, set()).add(dtypes[node.input[0]])
    # GRN's norm: sqrt(ReduceSum(x * x)) over H*W (deploy/grn_export.py), in float32.
    assert 'ReduceL2' not in seen
    assert seen['ReduceSum'] == {onnx.TensorProto.FLOAT}
    assert seen['LayerNormalization'] == {onnx.TensorProto.FLOAT}
    assert seen['Conv'] == {onnx.TensorProto.FLOAT16}
    assert seen['MatMul'] == {onnx.TensorProto.FLOAT16}


def test_fp16_graph_in_true_fp16_arithmetic_stays_finite_where_a_naive_one_does_not(
        seg_setup, tmp_path, monkeypatch):
    """ONNX Runtime's CPU provider runs float16 Conv / MatMul / Erf ... by casting them to float32
    (it has no float16 kernels for them on x86), so it cannot show a float16 overflow. onnx's
    reference evaluator computes every op in numpy in its declared dtype: there the exported
    graph stays finite, and the same network exported with GRN and LayerNorm in float16 (the
    naive export) does not."""
    from onnx.reference import ReferenceEvaluator

    from cnxv2_dense.deploy import precision
    from cnxv2_dense.models import layers
    _, _, config, _ = seg_setup
    checkpoint = overflowing_checkpoint(config, tmp_path / 'big.pth')
    pixels = example_input((64, 64), 1, seed=3).numpy()
    ours = export_model(str(config), str(checkpoint), str(tmp_path / 'ours'),
                        ExportOptions(fp16=True, backbone_only=True))
    with np.errstate(all='ignore'):
        outputs = ReferenceEvaluator(str(ours.onnx_file)).run(None, {'pixels': pixels})
    assert all(np.isfinite(o).all() for o in outputs)

    # The naive export: GRN and LayerNorm parameters in float16, no float32 upcast inside them.
    monkeypatch.setattr(precision, 'FP32_LAYERS', ())
    monkeypatch.setattr(layers, '_upcast', lambda x: x)
    naive = export_model(str(config), str(checkpoint), str(tmp_path / 'naive'),
                         ExportOptions(fp16=True, backbone_only=True))
    with np.errstate(all='ignore'):
        outputs = ReferenceEvaluator(str(naive.onnx_file)).run(None, {'pixels': pixels})
    assert not all(np.isfinite(o).all() for o in outputs)


# --- bad inputs ----------------------------------------------------------------------------

def test_an_unsupported_model_family_is_named_with_the_supported_ones(tmp_path):
    config = tmp_path / 'retinanet.py'
    config.write_text("_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']\n")
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': {}}, checkpoint)
    with pytest.raises(ValueError, match='RetinaNet') as err:
        export_model(str(config), str(checkpoint), str(tmp_path / 'out'))
    assert 'Mask R-CNN' in str(err.value) and 'UperNet' in str(err.value)
    assert '--backbone-only' in str(err.value)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('name', ['mask2former_cnxv2_t_ade20k.py',
                                  'mask2former_cnxv2_t_coco_instance.py', 'dino_cnxv2_t_coco.py'])
def test_the_query_based_heads_are_refused_with_the_reason(name):
    from cnxv2_dense.deploy import UnsupportedModelError, model_family
    cfg = Config.fromfile(str(Path(ROOT) / 'configs' / name))
    with pytest.raises(UnsupportedModelError, match='deformable attention') as err:
        model_family(cfg)
    assert ('Mask2Former' if name.startswith('mask2former') else 'DINO') in str(err.value)
    assert '--backbone-only' in str(err.value)


def test_a_checkpoint_of_another_model_is_refused_before_export(seg_setup, tmp_path):
    root, data, config, _ = seg_setup
    other = tmp_path / 'other.py'
    other.write_text(f"_base_ = [{str(config)!r}]\nmodel = dict(decode_head=dict(num_classes=7))\n")
    checkpoint = trained_like_checkpoint(other, tmp_path / 'other.pth')
    with pytest.raises(SystemExit, match='decode_head.conv_seg.weight') as err:
        export_model(str(config), str(checkpoint), str(tmp_path / 'out'))
    assert 'does not fit' in str(err.value) and 'trained with' in str(err.value)
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


@pytest.mark.parametrize('shape, hint', [((100, 96), '--shape 128 96'), ((20, 64), '--shape 32 64')])
def test_a_static_shape_the_network_cannot_take_is_refused(seg_setup, tmp_path, shape, hint):
    _, _, config, checkpoint = seg_setup
    with pytest.raises(SystemExit, match='multiples of 32') as err:
        export_model(str(config), str(checkpoint), str(tmp_path), ExportOptions(shape=shape))
    assert hint in str(err.value)


def test_an_existing_output_is_kept_without_overwrite(seg_setup, tmp_path):
    _, _, config, checkpoint = seg_setup
    first = export_model(str(config), str(checkpoint), str(tmp_path), ExportOptions())
    before = first.onnx_file.read_bytes(), first.metadata_file.read_bytes()
    with pytest.raises(SystemExit, match='--overwrite'):
        export_model(str(config), str(checkpoint), str(tmp_path), ExportOptions(dynamic=True))
    assert (first.onnx_file.read_bytes(), first.metadata_file.read_bytes()) == before
    again = export_model(str(config), str(checkpoint), str(tmp_path),
                         ExportOptions(dynamic=True, overwrite=True))
    assert again.onnx_file.read_bytes() != before[0]


def test_a_missing_onnx_names_the_deploy_extra(monkeypatch):
    import importlib

    from cnxv2_dense.dependencies import DependencyError
    from cnxv2_dense.deploy import requirements
    real = importlib.import_module

    def no_onnxruntime(name, *args):
        if name == 'onnxruntime':
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *args)
    monkeypatch.setattr(requirements.importlib, 'import_module', no_onnxruntime)
    with pytest.raises(DependencyError, match=r'cnxv2_dense\[deploy\]'):
        requirements.require('onnxruntime')


def test_a_static_export_refuses_another_input_size(seg_setup, tmp_path):
    from cnxv2_dense.deploy.runtime import OnnxModel
    _, _, config, checkpoint = seg_setup
    result = export_model(str(config), str(checkpoint), str(tmp_path), ExportOptions())
    model = OnnxModel(result.onnx_file)
    assert model.static_size == [96, 96]
    with pytest.raises(ValueError, match='--dynamic'):
        model(example_input((64, 96)).numpy())


def test_a_static_batch_export_takes_that_batch_and_refuses_another(seg_setup, tmp_path):
    """--batch 2: the graph's input is (2, 3, H, W), its four outputs are PyTorch's backbone's
    at batch 2, and the runtime refuses one image naming --batch and --dynamic."""
    from cnxv2_dense.deploy.runtime import OnnxModel
    _, _, config, checkpoint = seg_setup
    result = export_model(str(config), str(checkpoint), str(tmp_path),
                          ExportOptions(backbone_only=True, batch=2))
    assert result.check['passed'], result.check
    assert result.metadata['input']['shape'] == [2, 3, 96, 96]
    graph_input = session(result.onnx_file).get_inputs()[0]
    assert graph_input.shape == [2, 3, 96, 96]
    model = build_model(Config.fromfile(str(config)))
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    pixels = example_input((96, 96), 2, seed=3).numpy()
    onnx_model = OnnxModel(result.onnx_file)
    ours = onnx_model(pixels)
    with torch.no_grad():
        reference = model.backbone(normalised(pixels).float())
    for i, ref in enumerate(reference):
        got = ours[f'features_{i}']
        assert got.shape == tuple(ref.shape) and got.shape[0] == 2
        assert np.abs(got - ref.numpy()).max() / np.abs(ref.numpy()).max() < 1e-4
    with pytest.raises(ValueError, match='batches of 2') as err:
        onnx_model(pixels[:1])
    assert '--batch 1' in str(err.value) and '--dynamic' in str(err.value)


@pytest.mark.parametrize('batch, dynamic, message', [(0, False, 'at least one image'),
                                                     (2, True, 'give one of the two')])
def test_a_batch_the_export_cannot_take_is_refused(seg_setup, tmp_path, batch, dynamic,
                                                   message):
    _, _, config, checkpoint = seg_setup
    with pytest.raises(SystemExit, match=message):
        export_model(str(config), str(checkpoint), str(tmp_path),
                     ExportOptions(batch=batch, dynamic=dynamic))
    assert not any(tmp_path.iterdir())


def test_fp16_on_a_torch_without_cpu_float16_convolutions_is_refused(seg_setup, tmp_path,
                                                                        monkeypatch):
    """torch 2.1 (the oldest supported) cannot convolve float16 on the CPU, which tracing the
    --fp16 network needs: the export stops before it builds anything, saying so."""
    from cnxv2_dense.deploy import torch_support
    _, _, config, checkpoint = seg_setup
    if torch_support.cpu_runs_float16_convolutions():  # newer torch: take the support away
        monkeypatch.setattr(torch_support, 'cpu_runs_float16_convolutions', lambda: False)
    with pytest.raises(SystemExit, match='no float16 convolution on the CPU'):
        export_model(str(config), str(checkpoint), str(tmp_path), ExportOptions(fp16=True))
    assert not any(tmp_path.iterdir())


def test_too_old_an_opset_is_refused(seg_setup, tmp_path):
    _, _, config, checkpoint = seg_setup
    with pytest.raises(SystemExit, match='opset >= 17'):
        export_model(str(config), str(checkpoint), str(tmp_path), ExportOptions(opset=13))


# --- the tools, as a user runs them ---------------------------------------------------------

@pytest.mark.slow
def test_export_then_test_and_infer_through_onnxruntime_give_pytorch_results(seg_setup, tmp_path):
    root, data, config, checkpoint = seg_setup
    out = run_tool([PYTHON, 'tools/export.py', str(config), str(checkpoint), '--out',
                    str(tmp_path / 'onnx'), '--dynamic'])
    assert '"passed": true' in out
    onnx_file = tmp_path / 'onnx' / f'{config.stem}.onnx'
    metrics = {}
    for backend, model_file in (('pytorch', checkpoint), ('onnxruntime', onnx_file)):
        log = run_tool([PYTHON, 'tools/test.py', str(config), str(model_file), '--backend',
                        backend, '--work-dir', str(tmp_path / backend)])
        metrics[backend] = [line for line in log.splitlines() if 'mIoU' in line][-1]
        run_tool([PYTHON, 'tools/infer.py', str(config), str(model_file),
                  str(data / 'images' / 'validation'), '--out-dir', str(tmp_path / f'vis_{backend}'),
                  '--backend', backend])
    miou = {k: float(v.split('mIoU: ')[1].split()[0]) for k, v in metrics.items()}
    assert abs(miou['pytorch'] - miou['onnxruntime']) <= 0.1, metrics
    from PIL import Image
    pictures = sorted((tmp_path / 'vis_pytorch').rglob('*.png'))
    assert len(pictures) == 4
    for picture in pictures:
        ours = np.asarray(Image.open(tmp_path / 'vis_onnxruntime' / picture.name))
        reference = np.asarray(Image.open(picture))
        assert (ours == reference).all(axis=-1).mean() > 0.999
