"""Registries of the ``cnxv2_dense`` scope.

Each is a child of mmengine's root registry, so mmdet configs (default scope ``mmdet``) and
mmseg configs (default scope ``mmseg``) both find our modules as ``type='cnxv2_dense.X'``,
and nothing clashes with mmpretrain's ``ConvNeXt``.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='cnxv2_dense',
                  locations=['cnxv2_dense.models'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='cnxv2_dense', locations=['cnxv2_dense.optim'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='cnxv2_dense',
                    locations=['cnxv2_dense.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='cnxv2_dense',
                      locations=['cnxv2_dense.datasets'])
# Weight initializers (the format-converting `PretrainedBackbone`); the backbone names it by
# this scope, so the models need not import the checkpoint code that registers it.
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS,
                               scope='cnxv2_dense', locations=['cnxv2_dense.checkpoints'])
# Hooks the tools put in place of mmengine's (`AtomicCheckpointHook`).
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='cnxv2_dense',
                 locations=['cnxv2_dense.engine'])
# Metrics the tools put in place of the toolboxes' (`CocoMetric`); their module imports mmdet.
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='cnxv2_dense',
                   locations=['cnxv2_dense.evaluation.coco_metric'])
