from .synthetic_shapes import (CLASSES, PALETTE, SceneSpec, render_scene, write_ade_shapes,
                               write_coco_shapes)

__all__ = ['CLASSES', 'PALETTE', 'SceneSpec', 'render_scene', 'write_ade_shapes',
           'write_coco_shapes']
