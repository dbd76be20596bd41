"""Input checks: what the tools look at before they build anything, and how they report it.

Every check returns one line per problem, naming the file or config key, the problem and the
fix; a tool gathers the lines of its checks and stops with all of them at once through
:func:`stop_on_input_problems` (``docs/bad_inputs.md`` lists what is checked where):

- :mod:`.coco`: the COCO files, images and classes of a detection config (train, test);
- :mod:`.seg_labels`: the label maps and images of a segmentation config (train, test);
- :mod:`.images`: image files, and an input of images (infer, FCMAE pretraining);
- :mod:`.files`: checkpoints a config names, files a command line names (all tools);
- :mod:`.report`: the report and the stop.
"""
from .coco import TRAIN_LOADERS, check_coco_dataset, detection_data_problems
from .files import missing_checkpoint_files, missing_file
from .images import (IMAGE_SUFFIXES, UnusableImage, checked_image_size, image_folder_problems,
                     image_input_problems, image_problem, images_in)
from .report import stop_on_input_problems
from .seg_labels import (check_label_map, check_label_maps, label_values_after_loading,
                         segmentation_data_problems)

__all__ = [
    'IMAGE_SUFFIXES', 'TRAIN_LOADERS', 'UnusableImage', 'check_coco_dataset', 'check_label_map',
    'check_label_maps', 'checked_image_size', 'detection_data_problems', 'image_folder_problems',
    'image_input_problems', 'image_problem', 'images_in', 'label_values_after_loading',
    'missing_checkpoint_files', 'missing_file', 'segmentation_data_problems',
    'stop_on_input_problems',
]
