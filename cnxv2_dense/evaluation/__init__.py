"""Metrics the tools use in place of the toolboxes' own. Their modules import the toolbox
(mmdet, optional), so they are imported only where a config names them (``registry.METRICS``)."""
