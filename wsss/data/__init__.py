"""Datasets: one interface (``ids``, ``classes``, ``num_classes``, ``image``, ``mask``, ``labels``, items
as :class:`Sample`) over the VOC layout, COCO 2014, and the built-in benchmark (which writes VOC layout)."""

from wsss.data.voc import VOC_CLASSES, Sample, VOCDataset, open_dataset, read_image

__all__ = ["VOC_CLASSES", "Sample", "VOCDataset", "open_dataset", "read_image"]
