"""Box geometry: box-as-mask labels on a hand-made overlap."""

import numpy as np

from a2gnn.data.boxes import box_label_map
from a2gnn.data.voc import Box


def test_box_label_map_paints_boxes_smallest_on_top():
    boxes = (Box(0, 0, 4, 3, label=2), Box(2, 1, 5, 4, label=5), Box(3, 2, 4, 3, label=1))
    expected = np.array(
        [
            [2, 2, 2, 2, 0, 0],
            [2, 2, 5, 5, 5, 0],  # box 1 (area 9) is smaller than box 0 (area 12): it wins the overlap
            [2, 2, 5, 1, 5, 0],  # the 1-pixel box wins over both
            [0, 0, 5, 5, 5, 0],
        ],
        dtype=np.uint8,
    )
    assert np.array_equal(box_label_map(boxes, (4, 6)), expected)
    assert not box_label_map((), (2, 3)).any()


def test_box_baselines_stage_paints_boxes_and_fills_grabcut_unknowns(tiny_voc, tmp_path):
    """The stage on the tiny dataset: box-as-mask equals box_label_map of each annotation; GrabCut alone is M_B
    with every 255 (GrabCut background inside a box, Eq. 3) set to background and every other label kept."""
    import importlib.util
    from pathlib import Path

    import yaml

    from a2gnn.data.formats import DatasetConfig
    from a2gnn.data.formats import open_dataset
    from a2gnn.core.io import read_label, write_label

    dataset = open_dataset(DatasetConfig(root=str(tiny_voc)), "train")
    m_b_dir = tmp_path / "M_B"
    rng = np.random.default_rng(0)
    m_bs = {}
    for image_id in dataset.ids:
        ann = dataset.annotation(image_id)
        m_b = rng.choice(np.array([0, 1, 2, 255], dtype=np.uint8), size=(ann.height, ann.width))
        write_label(m_b_dir / f"{image_id}.png", m_b)
        m_bs[image_id] = m_b
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"root": str(tiny_voc)}}))
    spec = importlib.util.spec_from_file_location(
        "stage_box_baselines", Path(__file__).resolve().parents[2] / "stages" / "box_baselines.py"
    )
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.main(["--params", str(params), str(tiny_voc), str(m_b_dir), str(tmp_path / "boxes"), str(tmp_path / "gc")])
    for image_id in dataset.ids:
        ann = dataset.annotation(image_id)
        assert np.array_equal(read_label(tmp_path / "boxes" / f"{image_id}.png"),
                              box_label_map(ann.boxes, (ann.height, ann.width)))
        grabcut, m_b = read_label(tmp_path / "gc" / f"{image_id}.png"), m_bs[image_id]
        assert not (grabcut == 255).any()
        assert (grabcut[m_b == 255] == 0).all() and np.array_equal(grabcut[m_b != 255], m_b[m_b != 255])
