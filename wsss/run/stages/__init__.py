"""One module per stage; each reads the previous stage's files from the run directory and writes its own:

=================  ==============================================================================
``classifier``     RUN/classifier.pt (classifier@<name>.pt)                       ``wsss train-cls``
``maps``           RUN/maps/<method>[@<classifier>]/<id>.npz, computed by a localizer  ``wsss maps``
``fuse``           RUN/maps/<fusion>/<id>.npz, fused from its inputs' stored maps
``score``          RUN/masks/<key>/<id>.png + results.json["methods"][key]          ``wsss pseudo``
``amn``            RUN/<amn name>.pt                                                ``wsss train-amn``
``seg``            RUN/segmenter/<masks>.pt + results.json["segmentation"]          ``wsss train-seg``
=================  ==============================================================================
"""
