from .synthetic_shapes import (CLASSES, PALETTE, SceneSpec, layout_files, render_scene,
                               write_ade_shapes, write_coco_shapes)

__all__ = ['CLASSES', 'PALETTE', 'SceneSpec', 'layout_files', 'render_scene', 'write_ade_shapes',
           'write_coco_shapes']
from .image_folder import IMG_EXTENSIONS, ImageFolderDataset, is_readable_image, list_images
from .transforms import LoadImage, PackImageInputs, RandomResizedCrop

__all__ += ['IMG_EXTENSIONS', 'ImageFolderDataset', 'is_readable_image', 'list_images',
            'LoadImage', 'PackImageInputs', 'RandomResizedCrop']
