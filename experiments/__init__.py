"""Research experiments, kept apart from the user tools in ``tools/`` (as mmdet keeps
``projects/``). Each one is a folder with its code, its results and a README."""
