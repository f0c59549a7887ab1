"""Stage ``cam``: train the CAM classifier on the train split and write CAMs and seeds M_I (Eq. 1).

    python stages/cam.py <data_root> <out_dir> [--params params.yaml]

Writes, all or nothing (one atomic directory): <out_dir>/model.pt, <out_dir>/scores/<id>.npz
(cams float16 (K, H, W), labels int64 (K,)) and <out_dir>/M_I/<id>.png. An interrupted training resumes
from its last epoch checkpoint in checkpoints/cam/ (outside DVC's outputs, so a rerun finds it).
"""

from __future__ import annotations

import sys

from a2gnn.cli import run_stage, setup_stage, stage_parser
from a2gnn.config import DatasetConfig
from a2gnn.datasets import open_dataset
from a2gnn.io import atomic_dir
from a2gnn.training import checkpoint_dir, clear_checkpoint
from a2gnn.seeds.cam import CAMConfig, save_cam_checkpoint, train_cam_model, write_cam_outputs


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("data_root", help="VOC-layout dataset root")
    parser.add_argument("out_dir", help="output directory (replaced atomically)")
    parser.add_argument("--checkpoints", default=str(checkpoint_dir("cam")), help="resume folder (not a DVC output)")
    args = parser.parse_args(argv)
    params, base, runtime = setup_stage(args)
    data_cfg = DatasetConfig.from_params(params.get("dataset"))
    cfg = CAMConfig.from_params(params.get("cam"))
    dataset = open_dataset(data_cfg, data_cfg.train_split, args.data_root)

    def report(epoch: int, loss: float) -> None:
        print(f"cam: epoch {epoch + 1}/{cfg.epochs} BCE loss {loss:.4f}", file=sys.stderr)

    with atomic_dir(args.out_dir) as tmp:
        model = train_cam_model(dataset, cfg, runtime.device, base.seed, on_epoch=report, checkpoint_dir=args.checkpoints)
        save_cam_checkpoint(tmp / "model.pt", model, cfg, dataset.class_names, cfg.epochs)
        write_cam_outputs(model, dataset, cfg, tmp, runtime.device)
    clear_checkpoint(args.checkpoints)


if __name__ == "__main__":
    run_stage(main)
