"""Is `kenprune eval` as fast as a plain loop? And how fast does the default model load?

Measures, in one run: tokens/s of kenprune.evaluate.language_model vs a plain forward loop over
the same windows (goal: ratio >= 0.95), and smollm2-135m load time cold (GGUF conversion into
an empty cache) vs warm (verified safetensors cache; goal <= 2 s).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time

from _common import print_table, save

import torch
import torch.nn.functional as F


def plain_loop(model, windows: torch.Tensor) -> tuple[float, float]:
    start = time.perf_counter()
    nll = 0.0
    with torch.inference_mode():
        for w in windows:
            logits = model(input_ids=w[None], use_cache=False).logits[0, :-1]
            nll += F.cross_entropy(logits.float(), w[1:], reduction="sum").item()
    return time.perf_counter() - start, nll


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold (conversion) load")
    args = parser.parse_args()

    from kenprune.models import loading as models
    from kenprune.data.corpora import join_text, load_documents, tokenize_stream
    from kenprune.evaluate import evaluate, make_windows
    from kenprune.settings import Evaluation

    rows = []
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as tmp:
            old = os.environ.get("KENPRUNE_CACHE")
            os.environ["KENPRUNE_CACHE"] = tmp
            start = time.perf_counter()
            models.load_model("smollm2-135m")
            rows.append({"measure": "load cold (convert GGUF)", "seconds": time.perf_counter() - start})
            if old is None:
                del os.environ["KENPRUNE_CACHE"]
            else:
                os.environ["KENPRUNE_CACHE"] = old
    warm = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        loaded = models.load_model("smollm2-135m")
        warm.append(time.perf_counter() - start)
    rows.append({"measure": "load warm (verified cache)", "seconds": statistics.median(warm)})

    protocol = Evaluation(data="wiki:test", seqlen=args.seqlen, windows=args.windows)
    windows = make_windows(tokenize_stream(loaded.tokenizer, join_text(load_documents("wiki:test"))),
                           args.seqlen, None, args.windows)
    ours, plain = [], []
    for _ in range(args.repeats):  # interleave to share the machine's noise
        result = evaluate(loaded, protocol, progress=False)
        ours.append(result.seconds)
        seconds, nll = plain_loop(loaded.model, windows)
        plain.append(seconds)
    tokens = windows.numel()
    plain_ppl = math.exp(nll / (windows.size(0) * (args.seqlen - 1)))
    rows.append({"measure": "kenprune eval", "seconds": statistics.median(ours),
                 "tokens_per_s": tokens / statistics.median(ours), "perplexity": result.value})
    rows.append({"measure": "plain loop", "seconds": statistics.median(plain),
                 "tokens_per_s": tokens / statistics.median(plain), "perplexity": plain_ppl})
    ratio = statistics.median(plain) / statistics.median(ours)
    print_table(rows, ["measure", "seconds", "tokens_per_s", "perplexity"])
    print(f"\nthroughput ratio kenprune/plain = {ratio:.3f} (goal >= 0.95); "
          f"warm load {rows[-3]['seconds']:.2f} s (goal <= 2 s)")
    save("eval_throughput", {"model": "smollm2-135m", "data": "wiki:test", "seqlen": args.seqlen,
                             "windows": args.windows, "repeats": args.repeats, "seed": None},
         rows, throughput_ratio=ratio, warm_load_seconds=statistics.median(warm))


if __name__ == "__main__":
    main()
