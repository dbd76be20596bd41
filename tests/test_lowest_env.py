"""What is declared is what is tested: the lowest environment's lock (requirements/lowest/) holds
every declared dependency at the floor of its range, and CI's list of core tests to run in it
names tests that exist.

CI builds that environment with ``CNXV2_ENV=lowest bash tools/setup_env.sh`` and runs the list
(.ci/run); these checks only read files.
"""
import os
import re
import subprocess
from pathlib import Path
from typing import Dict

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from cnxv2_dense.dependencies import EXTRAS, REQUIRED

REPO = Path(__file__).resolve().parents[1]
LOWEST = REPO / 'requirements' / 'lowest'
PIN = re.compile(r'^([A-Za-z0-9_.-]+)==([^\s;#]+)$')


def lowest_lock() -> Dict[str, str]:
    """``{distribution: version}`` from requirements/lowest/*.txt (the requirement files and the
    constraints that pin everything they pull in); every line there is a pin, and a package
    named in two files has one version."""
    pins = {}
    for path in sorted(LOWEST.glob('*.txt')):
        for line in path.read_text().splitlines():
            line = line.split('#')[0].strip()
            if line:
                match = PIN.match(line)
                assert match, f'{path.name}: {line!r} is not an exact pin'
                dist, version = match.group(1).lower().replace('_', '-'), match.group(2)
                assert pins.setdefault(dist, version) == version, \
                    f'{path.name} pins {dist}=={version}, another file {pins[dist]}'
    return pins


def floor(spec: str) -> Version:
    lower = [s.version for s in SpecifierSet(spec) if s.operator == '>=']
    assert len(lower) == 1, f'{spec}: one lower bound (>=) expected'
    return Version(lower[0])


def test_lowest_lock_holds_every_declared_dependency_at_its_floor():
    pins = lowest_lock()
    declared = dict(REQUIRED)
    for extra in EXTRAS.values():
        declared.update(extra)
    for dist, spec in declared.items():
        assert dist in pins, f'{dist}{spec} is declared but not in requirements/lowest/'
        assert Version(pins[dist]) == floor(spec), \
            f'requirements/lowest/ pins {dist}=={pins[dist]}, the declared floor is {spec}'
    assert Version(pins['numpy']).major == 1  # the numpy 1.x that OpenMMLab 2.x users run


def test_core_test_list_names_tests_that_exist():
    lines = (REPO / '.ci' / 'lowest_env_tests.txt').read_text().splitlines()
    entries = [line.split('#')[0].strip() for line in lines]
    entries = [entry for entry in entries if entry]
    assert entries
    for entry in entries:
        path, _, name = entry.partition('::')
        assert (REPO / path).is_file(), entry
        if name:
            assert re.search(rf'^def {re.escape(name)}\(', (REPO / path).read_text(), re.M), entry
    assert '.ci/lowest_env_tests.txt' in (REPO / '.ci' / 'run').read_text()


def test_setup_env_names_the_environments_it_builds():
    result = subprocess.run(['bash', str(REPO / 'tools' / 'setup_env.sh')], capture_output=True,
                            text=True, env=dict(os.environ, CNXV2_ENV='oldest'), timeout=60)
    assert result.returncode == 2
    assert 'CNXV2_ENV=oldest: expected main (the default) or lowest' in result.stderr
