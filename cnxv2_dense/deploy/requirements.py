"""The optional packages of ``cnxv2_dense[deploy]``, imported only when they are needed."""
import importlib
from types import ModuleType

from ..dependencies import DependencyError, EXTRAS, check_version


def require(module_name: str) -> ModuleType:
    """Import ``onnx`` or ``onnxruntime``; a missing or unsupported one names the extra.

    Raises:
        DependencyError: ``pip install "cnxv2_dense[deploy]"`` is the fix.
    """
    spec = EXTRAS['deploy'][module_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise DependencyError(
            f'Exporting and running ONNX models needs {module_name}{spec}, which is not '
            f'installed ({err}). Install the deploy extra: pip install "cnxv2_dense[deploy]" '
            f'(from a checkout: pip install ".[deploy]").') from err
    check_version(module_name, str(module.__version__), 'deploy')
    return module
