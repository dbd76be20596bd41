"""docs/bad_inputs.md: at least 25 rows, and every test a row names exists."""
import re
from pathlib import Path

from .conftest import ROOT

DOC = Path(ROOT) / 'docs' / 'bad_inputs.md'


def rows() -> list:
    return [line for line in DOC.read_text().splitlines() if re.match(r'\| \d+ \|', line)]


def test_rows_are_numbered_and_there_are_at_least_25():
    numbers = [int(line.split('|')[1]) for line in rows()]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 25


def test_every_row_names_tests_that_exist():
    tests = Path(ROOT) / 'tests'
    for line in rows():
        names = re.findall(r'`(test_\w+\.py)(?:::(test_\w+))?', line.split('|')[-2])
        assert names, f'row without a test: {line[:60]}'
        for module, function in names:
            assert (tests / module).is_file(), module
            if function:
                assert re.search(rf'^def {function}\(', (tests / module).read_text(),
                                 flags=re.M), f'{module}::{function}'
