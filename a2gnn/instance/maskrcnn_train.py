"""Training of detectron2's Mask R-CNN (paper §5, Tables 2-3): deterministic, resumable, data-parallel through
:mod:`a2gnn.core.distributed`; the stage's job."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from a2gnn.core import distributed
from a2gnn.core.training import checkpoint_dir, clear_checkpoint, fingerprint, live_curves, prepare_checkpoint_dir
from a2gnn.instance.maskrcnn import (
    CHECKPOINT_STAGE,
    FINGERPRINT_FILE,
    GT,
    MaskRCNNConfig,
    build_d2_config,
    save_maskrcnn,
)
from a2gnn.instance.maskrcnn_data import (
    dataset_records,
    derived_seed,
    iteration_samples,
    register_instances,
    write_gt_instances,
)

log = logging.getLogger(__name__)


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
    for group in optimizer.param_groups:  # one fused update per group (same arithmetic, bit-identical weights)
        group["foreach"] = True
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
