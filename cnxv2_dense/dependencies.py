"""The versions of its dependencies cnxv2_dense supports, and the checks that enforce them.

One table serves two readers: ``setup.py`` (which ``exec``s this file, so it imports nothing
beyond the standard library at module level) turns it into ``install_requires`` and extras, and
``import cnxv2_dense`` checks the installed torch, mmengine and mmcv against it, failing with the
version found and the range, as mmdet does for mmcv. mmdet and mmsegmentation are optional
(extras ``det`` and ``seg``): nothing in the package imports them; the tools check for the one a
config needs (:func:`require_toolbox`) and say what to install when it is missing.

The ranges are what an existing OpenMMLab 2.x environment holds (mmdet 3.3 / mmcv 2.1 on
torch 2.1 and numpy 1.x) up to the versions this project tests on. The exact tested versions
are a lock, ``requirements/*.txt``, that ``tools/setup_env.sh`` installs from.
"""
import importlib
from typing import Dict, List, Optional, Tuple

# Distribution name -> supported versions (PEP 440). Imported by the package itself.
REQUIRED: Dict[str, str] = {
    'torch': '>=2.1.0',
    # mmdet 3.3 and mmsegmentation 1.2 refuse mmcv 2.2 at import; 2.1.0 is what they run on.
    'mmcv': '>=2.1.0,<2.2.0',
    'mmengine': '>=0.10.0,<1.0.0',
    # 1.24.2: every Python 3.11 wheel of onnxruntime (the [deploy] extra) needs it.
    'numpy': '>=1.24.2',
    'pillow': '>=9.3',  # the first with wheels for Python 3.11
    'safetensors': '>=0.4.0',  # timm / Hugging Face checkpoints
    # The version checks below; 20.9 is what huggingface-hub (under timm and transformers)
    # needs, so the lowest tested environment cannot hold an older one.
    'packaging': '>=20.9',
}

# Optional features: ``pip install "cnxv2_dense[det]"`` etc.
EXTRAS: Dict[str, Dict[str, str]] = {
    'det': {
        'mmdet': '>=3.3.0,<4.0.0',
        'pycocotools': '>=2.0.7',  # the COCO-format demo data
    },
    'seg': {
        'mmsegmentation': '>=1.2.2,<2.0.0',
        # NOTE: mmsegmentation 1.2's registry imports its multimodal models, which need these
        # two, although mmsegmentation does not declare them.
        'ftfy': '>=6.0',
        'regex': '>=2022.10.31',
    },
    # tools/export.py and the ONNX Runtime backend of tools/test.py / infer.py
    # (cnxv2_dense.deploy): opset 17 (LayerNormalization) needs onnx >= 1.12; RoiAlign's
    # half_pixel mode (opset 16) runs from onnxruntime 1.11; the floors are the oldest
    # releases with Python 3.11 wheels that the lowest environment runs the export tests on.
    'deploy': {
        'onnx': '>=1.14',
        'onnxruntime': '>=1.16',
    },
    'tests': {
        'pytest': '>=7.0',
        # Independent reference in the parity and checkpoint tests, through
        # forward_intermediates (ConvNeXt has it from 1.0.3, the first 1.0 on PyPI).
        'timm': '>=1.0.3',
        # NOTE: mmpretrain 1.2 imports its multimodal models whenever transformers >= 4.28 is
        # present, and those fail to import under transformers 4.57 and later.
        'transformers': '>=4.30,<4.57',
        'mmpretrain': '>=1.2.0,<2.0.0',
    },
}

# Distributions whose installed version ``import cnxv2_dense`` checks: module name -> distribution.
CHECKED_AT_IMPORT: Dict[str, str] = {'torch': 'torch', 'mmengine': 'mmengine', 'mmcv': 'mmcv'}

# The OpenMMLab toolboxes a config may need, by registry scope: (module, distribution, extra).
TOOLBOXES: Dict[str, Tuple[str, str, str]] = {
    'mmdet': ('mmdet', 'mmdet', 'det'),
    'mmseg': ('mmseg', 'mmsegmentation', 'seg'),
}

# How to install each checked distribution when it is missing or out of range.
_INSTALL_HINTS: Dict[str, str] = {
    'torch': 'pip install "torch{spec}" (https://pytorch.org/get-started/locally/ gives the '
             'command for your CUDA)',
    'mmcv': 'pip install -U openmim && mim install "mmcv{spec}" (prebuilt wheels for your torch '
            'and CUDA), or bash tools/setup_env.sh in a checkout',
}


class DependencyError(ImportError):
    """A dependency is missing, or installed at a version cnxv2_dense does not support."""


def _specifier(dist: str) -> str:
    if dist in REQUIRED:
        return REQUIRED[dist]
    for extra in EXTRAS.values():
        if dist in extra:
            return extra[dist]
    raise KeyError(f'{dist} is not a declared dependency of cnxv2_dense')


def _install_hint(dist: str, extra: Optional[str] = None) -> str:
    spec = _specifier(dist)
    if extra is not None:
        return f'pip install "cnxv2_dense[{extra}]" (or pip install "{dist}{spec}")'
    return _INSTALL_HINTS.get(dist, 'pip install "{dist}{spec}"').format(dist=dist, spec=spec)


def is_supported(version: str, spec: str) -> bool:
    """Whether ``version`` lies in the PEP 440 range ``spec``.

    Pre-releases and local builds count as their release (``2.2.0a0+81ea7a4``, as NVIDIA's
    containers ship torch, is inside ``>=2.1.0``; ``2.0.0rc4`` is below ``>=2.1.0``).
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
    return SpecifierSet(spec).contains(Version(version), prereleases=True)


def check_version(dist: str, version: str, extra: Optional[str] = None) -> None:
    """Raise :class:`DependencyError` unless ``version`` of ``dist`` is in its declared range.

    Args:
        dist (str): Distribution name as declared (``torch``, ``mmcv``, ``mmsegmentation``...).
        version (str): The installed version.
        extra (str, optional): The extra that installs ``dist``, for the hint. Defaults to None.
    """
    spec = _specifier(dist)
    if not is_supported(version, spec):
        raise DependencyError(
            f'cnxv2_dense supports {dist}{spec}, but {dist} {version} is installed. '
            f'Install a supported version: {_install_hint(dist, extra)}.')


def check_installed_versions() -> None:
    """Check torch, mmengine and mmcv (imported by the package) against :data:`REQUIRED`.

    Raises:
        DependencyError: One of them is missing or outside its range; the message names the
            version found, the range and how to install a supported one.
    """
    for module_name, dist in CHECKED_AT_IMPORT.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise DependencyError(
                f'cnxv2_dense needs {dist}{_specifier(dist)}, which is not installed '
                f'({err}). Install it: {_install_hint(dist)}.') from err
        check_version(dist, str(module.__version__))


def missing_toolbox_error(scope: str, why: str) -> DependencyError:
    """The error for a config that needs the toolbox of ``scope`` when it is not installed.

    Args:
        scope (str): ``'mmdet'`` or ``'mmseg'``.
        why (str): What in the config needs it, e.g. ``"default_scope='mmseg'"``.
    """
    _, dist, extra = TOOLBOXES[scope]
    return DependencyError(
        f'This config needs {dist} ({why}), which is not installed. '
        f'Install it: {_install_hint(dist, extra)}.')


def toolbox_of_distribution(dist: str) -> Optional[str]:
    """The scope (``'mmdet'`` / ``'mmseg'``) of a toolbox distribution name, or None."""
    for scope, (_, toolbox_dist, _) in TOOLBOXES.items():
        if dist == toolbox_dist:
            return scope
    return None


def require_toolbox(scope: Optional[str]) -> None:
    """Check that the toolbox a config's ``default_scope`` names is installed and supported.

    mmdet and mmsegmentation are optional; a detection user needs no mmseg and the other way
    round. Scopes other than ``mmdet`` / ``mmseg`` (``mmengine``, ``cnxv2_dense``, None) need
    neither and pass.

    Args:
        scope (str, optional): The config's ``default_scope``.

    Raises:
        DependencyError: The toolbox is missing or outside its supported range; the message
            says what to install.
    """
    if scope not in TOOLBOXES:
        return
    module_name, dist, extra = TOOLBOXES[scope]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise missing_toolbox_error(scope, f'default_scope={scope!r}') from err
    check_version(dist, str(module.__version__), extra)


def requirement_lines(table: Dict[str, str]) -> List[str]:
    """``{'torch': '>=2.1.0'}`` -> ``['torch>=2.1.0']``, as setup.py declares them."""
    return [f'{dist}{spec}' for dist, spec in table.items()]
