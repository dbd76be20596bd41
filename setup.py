"""Install cnxv2_dense: ConvNeXt V2 as a dense-prediction backbone for mmdet / mmseg."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    """Return the requirement lines of ``requirements/<name>.txt`` (comments dropped)."""
    lines = (ROOT / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines if ln.split('#')[0].strip()]


def read_version() -> str:
    namespace: dict = {}
    exec((ROOT / 'cnxv2_dense' / 'version.py').read_text(), namespace)
    return namespace['__version__']


setup(
    name='cnxv2_dense',
    version=read_version(),
    description='ConvNeXt V2 backbone, FCMAE pretraining and dense-prediction recipes '
    'for the OpenMMLab stack (mmdet 3.x, mmsegmentation 1.x)',
    long_description=(ROOT / 'README.md').read_text() if (ROOT / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['cnxv2_dense', 'cnxv2_dense.*']),
    python_requires='>=3.10',
    install_requires=read_requirements('torch') + read_requirements('runtime'),
    extras_require={'tests': read_requirements('tests')},
    license='Apache-2.0',
)
