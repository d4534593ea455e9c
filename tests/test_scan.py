import json
from pathlib import Path

import numpy as np
import pytest
from badfixtures import make_bad_dataset
from test_config import run_cli

from tlapp.base.errors import DataError
from tlapp.config import TaskType
from tlapp.data.imageio import load_rgb
from tlapp.data.scan_images import scan
from tlapp.data.split import split_examples


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "data"
    return root, make_bad_dataset(root)


def test_every_problem_named_by_path_and_reason(bad):
    root, expected = bad
    rep = scan(root)
    reasons = {str(Path(b.path).relative_to(root)): b.reason for b in rep.bad}
    for rel, fragment in expected.items():
        assert fragment in reasons[rel], (rel, reasons.get(rel))
    assert rep.counts == {"empty": 0, "good": 3, "odd": 6}
    assert rep.empty_classes == ["empty"]
    ignored = {str(Path(b.path).relative_to(root)): b.reason for b in rep.ignored}
    assert "__MACOSX" in ignored and ".hidden" in ignored
    assert "resource fork" in ignored["good/._ok1.jpg"] and "hidden" in ignored["good/.DS_Store"]
    with pytest.raises(DataError, match="empty"):
        rep.require_usable()


def test_odd_formats_become_rgb(bad):
    root, _ = bad
    for f in sorted((root / "odd").iterdir()):
        arr = load_rgb(f, (16, 16))
        assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8, f.name
    # 16-bit is scaled, not clipped.
    assert load_rgb(root / "odd" / "gray16.png").max() > 128


def test_transparent_pixels_are_composited_on_white(tmp_path):
    """The rule itself: a fully transparent pixel reads as white, an opaque one as itself, a half-transparent
    one half-way; the same for a palette image with a transparent index."""
    from PIL import Image

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 10, 10, 0)  # transparent red: white
    rgba[0, 1] = (200, 10, 10, 255)  # opaque red: red
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black: mid grey
    rgba[1, 1] = (0, 0, 255, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    arr = load_rgb(tmp_path / "a.png")
    assert arr[0, 0].tolist() == [255, 255, 255] and arr[0, 1].tolist() == [200, 10, 10]
    assert abs(int(arr[1, 0, 0]) - 127) <= 1 and arr[1, 1].tolist() == [0, 0, 255]
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png", transparency=0)
    arr = load_rgb(tmp_path / "p.png")
    assert arr[0, 0].tolist() == [255, 255, 255] and arr[0, 1].tolist() == [30, 60, 90]


def test_scan_cli_json_and_refusal(bad, capsys):
    root, expected = bad
    code, out, err = run_cli(["scan", str(root), "--json"], capsys)
    d = json.loads(out)
    assert code == 2 and "empty" in err
    assert d["n_bad"] == len(expected) and d["counts"]["odd"] == 6


def test_csv_sources_and_errors(tmp_path, color_data):
    files = sorted(color_data.rglob("*.png"))
    csv = tmp_path / "multi.csv"
    csv.write_text("path,label\n" + "".join(f"{f},{f.parent.name};shape\n" for f in files[:6]))
    rep = scan(csv, "multi_label")
    assert rep.counts["shape"] == 6 and all(isinstance(e.label, list) for e in rep.examples)
    reg = tmp_path / "reg.csv"
    reg.write_text("".join(f"{f},{i * 0.5}\n" for i, f in enumerate(files[:5])))
    assert [e.label for e in scan(reg, "regression").examples][:2] == [0.0, 0.5]
    reg.write_text(f"{files[0]},tall\n")
    with pytest.raises(DataError, match=r"reg.csv:row 1, label \(column 2\): label 'tall' is not a number"):
        scan(reg, "regression")
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "nothing")


def test_split_is_stratified_seeded_disjoint(color_data):
    rep = scan(color_data)
    a = split_examples(rep.examples, TaskType.image_classification, 0.3, 0.2, seed=3)
    b = split_examples(rep.examples, TaskType.image_classification, 0.3, 0.2, seed=3)
    c = split_examples(rep.examples, TaskType.image_classification, 0.3, 0.2, seed=4)
    paths = lambda s: [e.path for e in s]  # noqa: E731
    assert paths(a.val) == paths(b.val) and paths(a.val) != paths(c.val)
    sets = [set(paths(a.train)), set(paths(a.val)), set(paths(a.test))]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert sum(map(len, sets)) == 30
    for cls in ("red", "green", "blue"):
        assert sum(e.label == cls for e in a.val) == 3 and sum(e.label == cls for e in a.test) == 2


def test_imbalance_and_class_weights(tmp_path):
    from conftest import make_color_dataset

    root = tmp_path / "d"
    make_color_dataset(root, ("red",), n=12)
    make_color_dataset(root, ("blue",), n=3)
    rep = scan(root)
    assert rep.imbalance == 4.0
    assert rep.class_weights["blue"] > 1 > rep.class_weights["red"]
    assert any("imbalanced" in w for w in rep.warnings)


def test_tfds_offline_fails_cleanly(tmp_path):
    from tlapp.data.sources import materialize_tfds

    with pytest.raises(DataError, match="TFDS dataset 'tf_flowers' could not be loaded"):
        materialize_tfds("tf_flowers", str(tmp_path / "tfds"), tmp_path / "out")


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from tlapp.data.imageio import load_rgb

    Image.fromarray(np.full((4, 4), 100 * 257, np.uint16)).save(tmp_path / "g16.png")
    assert set(np.unique(load_rgb(tmp_path / "g16.png"))) == {100}  # clipping would give 255


def test_exact_and_near_duplicates_are_grouped_and_leaks_across_splits_counted(tmp_path):
    from PIL import Image

    from tlapp.data.duplicates import leaked_images
    from tlapp.data.split import Splits

    rng = np.random.default_rng(4)
    root = tmp_path / "d"
    pics = [np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((12, 12, 1))).astype(np.uint8) for _ in range(6)]
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(pics[i]).save(root / "a" / f"{i}.png")
        Image.fromarray(pics[3 + i]).save(root / "b" / f"{i}.png")
    (root / "b" / "copy.png").write_bytes((root / "a" / "0.png").read_bytes())  # same bytes, other label
    Image.fromarray(pics[1]).resize((50, 50)).save(root / "a" / "small.jpg", quality=90)  # resized, recompressed
    Image.new("RGB", (40, 40), (200, 10, 10)).save(root / "a" / "flat1.png")  # flat pictures: no near match
    Image.new("RGB", (30, 30), (10, 10, 200)).save(root / "b" / "flat2.png")
    rep = scan(root)
    groups = {(g["kind"], tuple(Path(p).name for p in g["paths"])) for g in rep.duplicates}
    assert ("exact", ("0.png", "copy.png")) in groups
    assert ("near", ("1.png", "small.jpg")) in groups
    assert not any("flat" in name for _, names in groups for name in names)
    assert any("duplicate images" in w and "1 with different labels" in w for w in rep.warnings)
    assert "fingerprints" not in rep.as_dict() and rep.as_dict()["duplicates"]

    by = {Path(e.path).name + Path(e.path).parent.name: e for e in rep.examples}
    splits = Splits([by["0.pnga"], by["1.pnga"]], [by["copy.pngb"], by["2.pnga"]], [by["small.jpga"]], 0)
    assert leaked_images(splits, rep.fingerprints) == {"val": 1, "test": 1}
