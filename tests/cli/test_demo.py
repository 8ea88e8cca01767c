"""The demo's closing sentences read its own figures (every number comes from the run records)."""
from kenprune.cli.demo import binomial_halfwidth, interpretation
from kenprune.record import Quality, RunRecord


def test_interpretation_reads_the_records():
    pruned = RunRecord("prune", {"name": "smollm2-135m"}, method="wanda",
                       quality=[Quality("perplexity", 29.6, "wiki:test", "before", "dense", {"windows": 8}),
                                Quality("perplexity", 68.8, "wiki:test", "after", "pruned", {"windows": 8})],
                       details={"sparsity": 0.5, "sizes": {"sparse_vs_dense_same_dtype": 0.63},
                                "block_linears": {"parameters": 106}, "overall": {"parameters": 134}})
    tuned = RunRecord("finetune", {"name": "minilm-l6"},
                      quality=[Quality("accuracy", 0.55, "pang-lee:test", "before", "pre-trained"),
                               Quality("accuracy", 0.825, "pang-lee:test", "after", "fine-tuned")])
    kept = RunRecord("ken", {"name": "minilm-l6"}, method="ken",
                     quality=[Quality("accuracy", 0.725, "pang-lee:test", "after", "KEN", {"total": 40})],
                     details={"totals": {"kept_fraction_of_selected": 0.25}, "sizes": {"ratio": 0.28}})
    sizes, perplexity, ken = interpretation(pruned, tuned, kept)
    assert "0.63x the dense size" in sizes and "(21% of the weights)" in sizes
    assert "29.60 to 68.80 (2.3x)" in perplexity and "first 8 windows" in perplexity
    assert "40 sentences" in ken and f"+-{binomial_halfwidth(0.825, 40):.2f}" in ken and "0.28x" in ken
    assert binomial_halfwidth(0.5, 100) == 1.96 * 0.05
