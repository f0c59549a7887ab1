"""Dataset readers (VOC 2012 + SBD, COCO instances) and the embedded default dataset generator."""

from a2gnn.datasets.coco import COCODataset, voc_to_coco, write_coco_instances
from a2gnn.datasets.voc import VOC_CLASSES, Annotation, Box, VOCDataset, load_class_names, parse_voc_xml

__all__ = [
    "VOC_CLASSES", "Annotation", "Box", "COCODataset", "VOCDataset", "load_class_names", "parse_voc_xml",
    "voc_to_coco", "write_coco_instances",
]
