"""KEN_viz: masks read from a tiny pre-trained / optimized pair equal the masks that made it."""
from __future__ import annotations

import numpy as np
import pytest

from kenprune.cli import main
from kenprune.errors import KenpruneError
from kenprune.report import ken_viz, load_masks
from kenprune.report.kenviz import matrix_family


def test_masks_from_two_model_folders(ken_pair):
    pre, opt, truth = ken_pair
    masks = load_masks(pre, opt, "layers.0.attn.q.weight")  # a full name matches that matrix in every layer
    assert list(masks.masks) == [f"layers.{i}.attn.q.weight" for i in range(4)]
    for name, mask in masks.masks.items():
        np.testing.assert_array_equal(mask, truth[name])
    figs = ken_viz(pre, opt, "mlp.up", layer=2)
    assert set(figs) == {"kept_fraction", "matrix", "neighbours", "layers"}
    np.testing.assert_array_equal(np.asarray(figs["matrix"].axes[0].images[0].get_array()),
                                  truth["layers.2.mlp.up.weight"].astype(np.float32))
    heights = [p.get_height() for p in figs["kept_fraction"].axes[0].patches]
    assert heights == pytest.approx([truth[f"layers.{i}.mlp.up.weight"].mean() for i in range(4)])


def test_matrix_family_patterns_and_errors():
    names = [f"model.layers.{i}.{t}" for i in (10, 2, 0) for t in ("q_proj.weight", "k_proj.weight")]
    assert matrix_family("q_proj", names) == [f"model.layers.{i}.q_proj.weight" for i in (0, 2, 10)]
    assert matrix_family("model.layers.*.k_proj.weight", names)[0] == "model.layers.0.k_proj.weight"
    with pytest.raises(KenpruneError, match="matches 2 matrix types"):
        matrix_family("proj", names)
    with pytest.raises(KenpruneError, match="no tensor matches"):
        matrix_family("v_proj", names)


def test_viz_cli_writes_page_and_pngs(ken_pair, tmp_path, capsys):
    pre, opt, _ = ken_pair
    out = tmp_path / "viz.html"
    assert main(["viz", "--pretrained", str(pre), "--optimized", str(opt), "--matrix", "attn.q", "--out", str(out)]) == 0
    assert "KEN_viz written" in capsys.readouterr().out
    assert out.read_text().count('<figure id="fig-') == 4
    assert len(list((tmp_path / "viz-figures").glob("*.png"))) == 2 + 2 * 4
    assert main(["viz", "--pretrained", str(pre), "--optimized", str(tmp_path / "none"), "--matrix", "q"]) == 2


def test_masks_straight_from_a_subnetwork_file(tmp_path, run_dirs, ken_pair):
    """With kenprune.ken present, masks come from the subnetwork file's positions (no base model needed)."""
    subnetwork = pytest.importorskip("kenprune.ken.subnetwork")
    import torch

    _, _, truth = ken_pair
    masks = {n: torch.from_numpy(m) for n, m in truth.items()}
    sub = subnetwork.Subnetwork(masks=masks, values={n: torch.ones(int(m.sum())) for n, m in masks.items()},
                                rows={n: m.shape[0] for n, m in masks.items()})
    path = run_dirs["ken"] / "subnetwork.safetensors"
    subnetwork.write_subnetwork(path, sub)
    got = load_masks(None, path, "attn.q")
    for name, mask in got.masks.items():
        np.testing.assert_array_equal(mask, truth[name])
    from kenprune.report import write_report

    html = write_report(run_dirs["ken"]).read_text()
    assert html.count('<figure id="fig-ken-run-') == 4  # per-tensor grid + matrix, neighbours, all layers


def test_a_fragment_means_the_weight_matrix_not_its_bias():
    from kenprune.report.kenviz import matrix_family

    names = [f"encoder.layer.{i}.attention.self.query.{p}" for i in range(2) for p in ("weight", "bias")]
    assert matrix_family("query", names) == [f"encoder.layer.{i}.attention.self.query.weight" for i in range(2)]
