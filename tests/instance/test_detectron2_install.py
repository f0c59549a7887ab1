"""detectron2 as installed by scripts/install_detectron2.py: imports, model-zoo configs, and a Mask R-CNN
R50-FPN built from the model-zoo config that trains one step and predicts on the CPU.

These tests fail (they do not skip) when detectron2 is missing: the README's test command installs it first.
Tests of the patches themselves run only against our pure-Python build (marker detectron2/_install_info.py);
an upstream detectron2 built from source passes the others.
"""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
MASK_RCNN_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
SIZE = 64  # image side in pixels
BOX = (12.0, 16.0, 44.0, 52.0)  # x1, y1, x2, y2 of the single object, XYXY_ABS

# detectron2 0.6 on torch 2.14: harmless deprecation noise.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning"),
]


def load_script():
    """scripts/install_detectron2.py as a module (registered in sys.modules: its dataclass needs that)."""
    if "install_detectron2" not in sys.modules:
        spec = importlib.util.spec_from_file_location("install_detectron2", ROOT / "scripts" / "install_detectron2.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["install_detectron2"]


def is_our_build() -> bool:
    try:
        return importlib.util.find_spec("detectron2._install_info") is not None
    except ModuleNotFoundError:  # no detectron2 at all: the tests below fail, they do not skip
        return False


@pytest.fixture(autouse=True)
def detectron2_installed():
    try:
        import detectron2.modeling  # noqa: F401
    except ImportError as error:
        pytest.fail(f"detectron2 does not import ({error}): run .venv/bin/python scripts/install_detectron2.py")


our_build_only = pytest.mark.skipif(
    not is_our_build(), reason="detectron2 is not the pure-Python build of scripts/install_detectron2.py"
)


# --- the installer's own text edits ----------------------------------------------------------------


def test_numpy_alias_regex_keeps_sized_types():
    script = load_script()
    text = "np.int np.float(x) np.bool, np.int64 np.float32 np.bool_ np.integer np.str np.object) np.intp"
    fixed, count = script.NUMPY_ALIAS.subn(lambda m: m.group(1), text)
    assert fixed == "int float(x) bool, np.int64 np.float32 np.bool_ np.integer str object) np.intp"
    assert count == 5


def test_edit_fails_loudly_when_text_is_missing(tmp_path):
    script = load_script()
    (tmp_path / "a.py").write_text("x = Image.LINEAR\n")
    script.apply_edit(tmp_path, script.Edit("a.py", "Image.LINEAR", "Image.BILINEAR"))
    assert (tmp_path / "a.py").read_text() == "x = Image.BILINEAR\n"
    with pytest.raises(script.InstallError, match="a.py: expected 1 occurrence"):
        script.apply_edit(tmp_path, script.Edit("a.py", "Image.LINEAR", "Image.BILINEAR"))


def test_pip_version_guard():
    script = load_script()
    assert script.version_tuple("23.2.1") == (23, 2, 1)
    assert script.version_tuple("26.3b1") == (26, 3)
    assert script.version_tuple("26.2.1") < script.PIP_MAX_EXCLUSIVE <= script.version_tuple("26.3")


def test_installer_refuses_new_pip_and_wrong_sdist(tmp_path, monkeypatch):
    script = load_script()
    bogus = tmp_path / "pb1-detectron2-0.6.tar.gz"
    bogus.write_bytes(b"not the sdist")
    with pytest.raises(script.InstallError, match="sha256"):
        script.install(bogus)
    monkeypatch.setattr(script, "dist_version", lambda name: "26.3.0")
    with pytest.raises(script.InstallError, match="pip<26.3"):
        script.check_pip()


def test_installer_is_idempotent(capsys, monkeypatch):
    script = load_script()

    def no_install(sdist):
        raise AssertionError("a second run of the installer must not reinstall")

    monkeypatch.setattr(script, "install", no_install)
    assert script.main([]) == 0
    out = capsys.readouterr().out
    assert ("already installed" in out) if is_our_build() else ("leaving it alone" in out)


# --- the installed package -------------------------------------------------------------------------


def test_model_zoo_config_installed():
    import detectron2.modeling  # noqa: F401
    from detectron2 import model_zoo

    path = Path(model_zoo.get_config_file(MASK_RCNN_CONFIG))
    assert path.is_file() and path.parent.parent.name == "configs"
    assert (path.parent.parent / "Base-RCNN-FPN.yaml").is_file()  # its _BASE_
    with pytest.raises(RuntimeError, match="not available"):
        model_zoo.get_config_file("COCO-InstanceSegmentation/no_such_model.yaml")


@our_build_only
def test_c_extension_stub_raises_clear_error():
    from detectron2 import _C
    from detectron2.layers import deform_conv  # imports _C at import time  # noqa: F401

    with pytest.raises(AttributeError, match="pure-Python install"):
        _C.deform_conv_forward
    with pytest.raises(AttributeError, match="use_fast_impl=False"):
        _C.COCOevalAccumulate
    assert "none" in _C.get_compiler_version() and not _C.has_cuda()


@our_build_only
def test_patched_numpy_and_pillow_code_paths():
    from detectron2.data.transforms import ExtentTransform
    from detectron2.structures.masks import polygons_to_bitmask

    square = np.array([2, 2, 6, 2, 6, 6, 2, 6], dtype=np.float64)  # np.bool alias was used here
    mask = polygons_to_bitmask([square], 8, 8)
    assert mask.dtype == bool and mask[3:6, 3:6].all() and not mask[0].any()
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    out = ExtentTransform((0, 0, 16, 16), (8, 8)).apply_image(image)  # Image.LINEAR default was here
    assert out.shape == (8, 8, 3)


# --- Mask R-CNN R50-FPN from the model zoo, random init, on the CPU ---------------------------------


def tiny_mask_rcnn_cfg():
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(MASK_RCNN_CONFIG))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""  # no pretrained weights here
    cfg.MODEL.RESNETS.NORM = "BN"  # FrozenBN diverges from random init
    # The model zoo's PIXEL_STD of 1 suits pretrained caffe weights; from random init with BN in eval
    # mode it blows activations up to ~5e3 and leaves no detection. Real per-channel stds (BGR, 0-255):
    cfg.MODEL.PIXEL_STD = [57.375, 57.120, 58.395]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # keep detections of the untrained model
    cfg.TEST.DETECTIONS_PER_IMAGE = 5  # the mask head's cost grows with the detections
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.INPUT.MIN_SIZE_TRAIN = (SIZE,)
    cfg.INPUT.MAX_SIZE_TRAIN = SIZE
    cfg.INPUT.MIN_SIZE_TEST = SIZE
    cfg.INPUT.MAX_SIZE_TEST = SIZE
    cfg.INPUT.MASK_FORMAT = "polygon"
    cfg.freeze()
    return cfg


def tiny_dataset_dict(tmp_path):
    """One random 64x64 image file with one box (class 1) and its rectangle polygon, detectron2 format."""
    from PIL import Image

    from detectron2.structures import BoxMode

    rng = np.random.default_rng(0)
    path = tmp_path / "image.png"
    Image.fromarray(rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    x1, y1, x2, y2 = BOX
    return {
        "file_name": str(path), "image_id": 0, "height": SIZE, "width": SIZE,
        "annotations": [{
            "bbox": list(BOX), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 0,
            "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
        }],
    }


def test_mask_rcnn_trains_one_step_and_predicts(tmp_path):
    from detectron2.data import DatasetMapper
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    cfg = tiny_mask_rcnn_cfg()
    model = build_model(cfg)
    assert cfg.MODEL.RESNETS.DEPTH == 50 and cfg.MODEL.MASK_ON
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    record = tiny_dataset_dict(tmp_path)

    train_input = DatasetMapper(cfg, is_train=True)(dict(record))
    assert train_input["image"].shape == (3, SIZE, SIZE)
    assert len(train_input["instances"]) == 1 and train_input["instances"].has("gt_masks")

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    with EventStorage(0):  # detectron2 logs training statistics into the current storage
        losses = model([train_input])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    before = model.roi_heads.mask_head.predictor.weight.detach().clone()
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(before, model.roi_heads.mask_head.predictor.weight)

    model.eval()
    test_input = DatasetMapper(cfg, is_train=False)(dict(record))
    with torch.no_grad():
        (output,) = model([test_input])
    instances = output["instances"]
    assert 1 <= len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE
    assert instances.pred_masks.shape == (len(instances), SIZE, SIZE)
    assert instances.pred_masks.dtype == torch.bool
    assert torch.isfinite(instances.scores).all() and set(instances.pred_classes.tolist()) <= {0, 1}
