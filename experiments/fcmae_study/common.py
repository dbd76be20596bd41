"""What the two tools of the FCMAE study share: one job type, one worker pool, one held-out
selector, one results writer and the command line they record.

``study.py`` and ``levers.py`` both queue fine-tuning runs (``FinetuneJob``) on the same pool of
spawned processes (``worker_pool``), each of which loads the rendered splits once
(``save_splits`` writes them); both choose every setting on the held-out split with
``choose_on_heldout``, and both write ``results.json`` and ``results.md`` with ``write_results``,
recording the command that made them (``command_line``).
"""
import json
import multiprocessing
import shlex
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import torch
from mmengine.logging import MMLogger

from experiments.fcmae_study.training import (ROOT, Record, Split, Study, labeled_subset,
                                              run_cell)


# ---------------------------------------------------------------------------------------- jobs
@dataclass
class FinetuneJob:
    """One fine-tuning run: ``arm`` on ``budget`` pool images drawn with ``seed``, scored on
    ``split`` (``'heldout'`` when the run takes part in a choice, else ``'val'``)."""
    arm: str  # an init of ``training.ARMS``
    budget: int  # labeled images, drawn from the pool with ``seed``
    seed: int
    lr: float
    split: str
    study: Study  # the fine-tuning settings: arch, iterations, layer decay, frozen iterations
    scene: str  # which rendered splits (a key of ``save_splits``' dict)
    backbone: Optional[str] = None  # the pretrained backbone file; None: random init
    freeze_backbone: bool = False  # train the heads only (the frozen-backbone probes)
    variant: str = ''  # levers.py: the init's name (``scratch`` or a pretraining variant)


def run_finetune_job(job: FinetuneJob) -> Record:
    """Run ``job`` in a worker of ``worker_pool``."""
    data = worker_splits(job.scene)
    train = labeled_subset(data['pool'], job.budget, job.seed)
    return run_cell(job.arm, train, data[job.split], job.lr, job.study, job.seed,
                    None if job.backbone is None else Path(job.backbone), job.split,
                    job.freeze_backbone)


# ---------------------------------------------------------------------------------------- pool
# The splits of each scene, loaded once by each worker process (``_init_worker``).
_DATA: Dict[str, Dict[str, Split]] = {}


def save_splits(splits: Mapping[str, Mapping[str, Split]], data_file: Path) -> Path:
    """Write ``{scene: {split name: Split}}`` to ``data_file``, for ``worker_pool``."""
    torch.save({scene: {name: (s.images, s.labels) for name, s in named.items()}
                for scene, named in splits.items()}, data_file)
    return data_file


def _init_worker(data_file: str, threads: int) -> None:
    torch.set_num_threads(threads)
    MMLogger.get_instance('fcmae_study', log_level='WARNING')
    for scene, named in torch.load(data_file).items():
        _DATA[scene] = {name: Split(*pair) for name, pair in named.items()}


def worker_splits(scene: str) -> Dict[str, Split]:
    """In a worker of ``worker_pool``: the splits of ``scene``."""
    return _DATA[scene]


@contextmanager
def worker_pool(data_file: Path, workers: int, threads: int) -> Iterator:
    """``workers`` processes, each running ``threads`` threads and holding the splits of
    ``data_file``; closed and joined on leaving the block."""
    # NOTE: spawned, not forked: a forked child of a process that ran torch can deadlock.
    pool = multiprocessing.get_context('spawn').Pool(
        workers, initializer=_init_worker, initargs=(str(data_file), threads))
    try:
        yield pool
    finally:
        pool.close()
        pool.join()


# ----------------------------------------------------------------------------------- choosing
def choose_on_heldout(runs: Sequence[Mapping[str, Any]], setting: str, by: str) -> Dict[str, Any]:
    """``{run[by]: run[setting]}`` of the held-out run with the highest mIoU in each group of
    ``runs`` with the same ``run[by]`` (the first of a tie). The val split never takes part in a
    choice: a run on any other split is refused."""
    best: Dict[str, Mapping[str, Any]] = {}
    for run in runs:
        if run['split'] != 'heldout':
            raise ValueError(f"a {run['split']} run cannot take part in a choice: only held-out "
                             f"runs choose ({dict(run)})")
        group = run[by]
        if group not in best or run['miou'] > best[group]['miou']:
            best[group] = run
    return {group: run[setting] for group, run in best.items()}


# ------------------------------------------------------------------------------------ results
def command_line(script: str, argv: Optional[Sequence[str]] = None) -> str:
    """The command a result records: ``python SCRIPT ARGS`` from the repository root (``argv``
    defaults to this process's arguments)."""
    path = Path(script).resolve().relative_to(ROOT).as_posix()
    args = sys.argv[1:] if argv is None else argv
    return (f'python {path} ' + ' '.join(shlex.quote(a) for a in args)).strip()


def write_results(out_dir: Path, result: Dict[str, Any], heading: str, table: str,
                  seconds: float) -> Dict[str, Any]:
    """Write ``result`` (which records its ``command``) as ``OUT/results.json``, and
    ``OUT/results.md``: ``heading``, the command and its run time, then ``table``."""
    (out_dir / 'results.json').write_text(json.dumps(result, indent=1) + '\n')
    (out_dir / 'results.md').write_text(
        f"{heading}\nProduced by `{result['command']}` in {seconds / 60:.0f} min.\n\n{table}\n")
    return result
