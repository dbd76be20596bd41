"""How every tool reports the problems its input checks found: all at once, then stop.

Each check of this package returns one line per problem, naming the file or config key, the
problem and the fix; a tool gathers the lines of its checks and hands them to
:func:`stop_on_input_problems` before it builds anything or writes a file.
"""
from typing import List


def stop_on_input_problems(problems: List[str], source: str, spoiled: str, skip: str,
                           max_shown: int = 20) -> None:
    """Stop the tool (``SystemExit``) listing ``problems``, one per line; do nothing without any.

    Args:
        problems (list[str]): One line per problem, naming the file or key, the problem and the
            fix.
        source (str): What holds the inputs, e.g. the config file.
        spoiled (str): What they would stop or spoil, e.g. ``'training'``.
        skip (str): How to go on without the check, e.g. ``'--skip-data-check trains without
            this check'``.
        max_shown (int): Problems listed; the rest are counted. Defaults to 20.
    """
    if not problems:
        return
    shown = '\n  '.join(problems[:max_shown])
    more = f'\n  ... and {len(problems) - max_shown} more' if len(problems) > max_shown else ''
    raise SystemExit(f'error: {len(problems)} problem(s) in the inputs of {source} would stop or '
                     f'spoil {spoiled}:\n  {shown}{more}\n({skip})')
