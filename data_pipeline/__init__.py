"""OSM to georeferenced multi-channel tiles with per-tile urban-form parameters.

Main entry points: :func:`data_pipeline.build.build_dataset` and
:func:`data_pipeline.dataset.open_dataset`.
"""
