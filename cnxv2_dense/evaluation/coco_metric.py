"""mmdet's ``CocoMetric`` for COCO files without the optional ``info`` / ``licenses`` keys.

Many converters (and hand-written files) leave out ``info`` and ``licenses``; pycocotools 2.0.10
reads them only in ``COCO.loadRes``, the first step of evaluating predictions. With mmdet's metric
a training run on such a file therefore ran to its first validation and then died with
``KeyError: 'info'``, after the training it had already spent. This metric fills in the empty
defaults the COCO format describes (``info={}``, ``licenses=[]``) in its in-memory copy; the
user's file is not changed.
"""
from mmdet.evaluation import CocoMetric as MMDetCocoMetric

from ..registry import METRICS

# Keys of the COCO format that pycocotools needs but annotation files may omit, with the value
# that stands for "none given".
OPTIONAL_KEYS = dict(info=dict, licenses=list)


@METRICS.register_module()
class CocoMetric(MMDetCocoMetric):
    """``mmdet.CocoMetric`` (same arguments) that accepts files without ``info`` / ``licenses``.

    The tools put it in place of ``CocoMetric`` in the val and test evaluators; a config can name
    it as ``dict(type='cnxv2_dense.CocoMetric', ...)``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self._coco_api is not None:  # None: built later from the dataset, with both keys
            for key, empty in OPTIONAL_KEYS.items():
                self._coco_api.dataset.setdefault(key, empty())
