"""Training loops: classifier, AMN, segmenter."""
