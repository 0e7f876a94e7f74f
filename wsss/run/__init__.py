"""Orchestration: the run directory, the stages that fill it, the plan that orders them, the pipeline and the
study. Import the sub-modules directly (``wsss.run.pipeline``, ``wsss.run.stages.maps``); nothing here is
imported by the layers below (``localize``, ``pseudo``, ``metrics``, ``data``, ``models``, ``train``)."""
