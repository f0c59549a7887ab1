"""stages/grabcut.py and stages/seeds.py: outputs, determinism, and bad input -> exit 1, no partial output."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from a2gnn.core.cli import run_stage
from a2gnn.core.io import read_label, write_label

ROOT = Path(__file__).resolve().parents[1]
SIZE = {"a": (56, 48), "b": (40, 44)}  # id -> (width, height)
OBJECTS = {"a": [("cat", 8, 6, 40, 36), ("dog", 30, 20, 54, 46)], "b": [("cat", 4, 4, 30, 30)]}  # VOC 1-based


def load_stage(name):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def annotation_xml(width, height, objects):
    parts = [f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, x1, y1, x2, y2 in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_dataset(root: Path) -> Path:
    """A two-image VOC-layout dataset: coloured ellipses inside their boxes on a grey background."""
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (w, h) in SIZE.items():
        img = np.full((h, w, 3), 128, dtype=np.int64) + rng.integers(-8, 9, (h, w, 3))
        yy, xx = np.mgrid[:h, :w]
        for colour, (_, x1, y1, x2, y2) in zip([(220, 30, 30), (30, 30, 220)], OBJECTS[image_id]):
            cy, cx, ry, rx = (y1 + y2) / 2 - 1, (x1 + x2) / 2 - 1, (y2 - y1) / 2.5, (x2 - x1) / 2.5
            img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = colour
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (root / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(w, h, OBJECTS[image_id]))
    (root / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    return root


def write_params(path: Path, workers=0) -> Path:
    params = {"base": {"seed": 0}, "runtime": {"workers": workers}, "dataset": {"train_split": "train"}, "grabcut": {}}
    path.write_text(yaml.safe_dump(params))
    return path


def run_grabcut(data, out, params):
    run_stage(load_stage("grabcut").main, [str(data), str(out), "--params", str(params)])


def snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "data"), write_params(tmp_path / "params.yaml")


def test_grabcut_stage_writes_deterministic_m_b(dataset, tmp_path):
    data, params = dataset
    out = tmp_path / "outputs" / "M_B"
    run_grabcut(data, out, params)
    first = snapshot(out)
    assert sorted(first) == ["a.png", "b.png"]
    m_b = read_label(out / "a.png")
    assert m_b.shape == (48, 56) and (m_b[0, :] == 0).all()  # row 0 lies outside every box (Eq. 3)
    assert set(np.unique(m_b).tolist()) <= {0, 8, 12, 255} and {8, 12} <= set(np.unique(m_b).tolist())
    run_grabcut(data, out, write_params(tmp_path / "params2.yaml", workers=2))  # process pool
    assert snapshot(out) == first


def break_missing_image(data):
    (data / "JPEGImages/b.jpg").unlink()
    return "b.jpg"


def break_corrupt_image(data):
    (data / "JPEGImages/b.jpg").write_bytes(b"\x00garbage, not a JPEG" * 10)
    return "b.jpg"


def break_box_outside(data):
    (data / "Annotations/b.xml").write_text(annotation_xml(40, 44, [("cat", 4, 4, 41, 30)]))
    return "b.xml"


def break_zero_area_box(data):
    (data / "Annotations/b.xml").write_text(annotation_xml(40, 44, [("cat", 20, 4, 19, 30)]))
    return "b.xml"


def break_unknown_class(data):
    (data / "Annotations/b.xml").write_text(annotation_xml(40, 44, [("unicorn", 4, 4, 30, 30)]))
    return "b.xml"


def break_empty_annotation(data):
    (data / "Annotations/b.xml").write_text(annotation_xml(40, 44, []))
    return "b.xml"


def break_size_mismatch(data):
    (data / "Annotations/b.xml").write_text(annotation_xml(40, 50, OBJECTS["b"]))
    return "b.jpg"


BREAKAGES = [
    break_missing_image, break_corrupt_image, break_box_outside, break_zero_area_box,
    break_unknown_class, break_empty_annotation, break_size_mismatch,
]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__[6:])
@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing"])
def test_grabcut_stage_bad_input(breakage, existing, dataset, tmp_path, capsys):
    data, params = dataset
    out = tmp_path / "outputs" / "M_B"
    if existing:
        run_grabcut(data, out, params)
        before = snapshot(out)
    bad_file = breakage(data)
    with pytest.raises(SystemExit) as exc:
        run_grabcut(data, out, params)
    assert exc.value.code == 1
    assert bad_file in capsys.readouterr().err
    if existing:
        assert snapshot(out) == before  # the previous good output is untouched
    else:
        assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir()] if out.parent.exists() else []
    assert leftovers == (["M_B"] if existing else [])  # no temporary directories left behind


def write_cam_outputs(cam_dir: Path, m_b_dir: Path):
    """Fake CAM outputs consistent with docs/ARCHITECTURE.md: M_I copies M_B's object pixels."""
    for image_id in SIZE:
        m_b = read_label(m_b_dir / f"{image_id}.png")
        labels = np.array(sorted({8, 12} if image_id == "a" else {8}))
        cams = np.stack([(m_b == c) * np.linspace(0.2, 1.0, m_b.size).reshape(m_b.shape) for c in labels])
        (cam_dir / "scores").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cam_dir / "scores" / f"{image_id}.npz", cams=cams.astype(np.float16), labels=labels)
        write_label(cam_dir / "M_I" / f"{image_id}.png", np.where(m_b == 255, 0, m_b).astype(np.uint8))


def test_seeds_stage_outputs_and_bad_input(dataset, tmp_path, capsys):
    data, params = dataset
    m_b_dir, cam_dir, out = tmp_path / "seeds" / "M_B", tmp_path / "cam", tmp_path / "seeds"
    run_grabcut(data, m_b_dir, params)
    write_cam_outputs(cam_dir, m_b_dir)
    argv = [str(data), str(cam_dir), str(m_b_dir), str(out / "M_F"), str(out / "M_g"), "--params", str(params)]
    run_stage(load_stage("seeds").main, argv)
    for image_id in SIZE:
        m_b, m_f, m_g = (read_label(out / d / f"{image_id}.png") for d in ("M_B", "M_F", "M_g"))
        assert np.array_equal(m_f, m_b)  # M_I agrees with M_B wherever M_B has an object
        assert ((m_g == m_f) | (m_g == 255)).all() and (m_g == 255).sum() > (m_f == 255).sum()
    before = {d: snapshot(out / d) for d in ("M_F", "M_g")}
    (cam_dir / "scores" / "b.npz").unlink()
    with pytest.raises(SystemExit):
        run_stage(load_stage("seeds").main, argv)
    assert "b.npz" in capsys.readouterr().err
    assert {d: snapshot(out / d) for d in ("M_F", "M_g")} == before
    assert sorted(p.name for p in out.iterdir()) == ["M_B", "M_F", "M_g"]
