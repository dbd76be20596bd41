"""Install cnxv2_dense: ConvNeXt V2 as a dense-prediction backbone for mmdet / mmseg.

The package declares the versions it supports as ranges (``cnxv2_dense/dependencies.py``), so
``pip install`` into an existing OpenMMLab environment replaces nothing there. mmdet and
mmsegmentation are extras: ``pip install "cnxv2_dense[det]"``, ``[seg]``, ``[all]``, ``[tests]``.
The exact versions this project tests on are a lock, ``requirements/*.txt``, installed by
``tools/setup_env.sh``; this file does not read it.
"""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_module(relative_path: str) -> dict:
    """Execute a standard-library-only module of the package and return its namespace."""
    namespace: dict = {}
    exec((ROOT / relative_path).read_text(), namespace)
    return namespace


version = read_module('cnxv2_dense/version.py')['__version__']
deps = read_module('cnxv2_dense/dependencies.py')
lines = deps['requirement_lines']
extras = {name: lines(table) for name, table in deps['EXTRAS'].items()}
extras['all'] = extras['det'] + extras['seg']
extras['tests'] = extras['all'] + extras['deploy'] + extras['tests']  # the suite covers all

setup(
    name='cnxv2_dense',
    version=version,
    description='ConvNeXt V2 backbone, FCMAE pretraining and dense-prediction recipes '
    'for the OpenMMLab stack (mmdet 3.x, mmsegmentation 1.x)',
    long_description=(ROOT / 'README.md').read_text() if (ROOT / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['cnxv2_dense', 'cnxv2_dense.*']),
    python_requires='>=3.10',
    install_requires=lines(deps['REQUIRED']),
    extras_require=extras,
    license='Apache-2.0',
)
