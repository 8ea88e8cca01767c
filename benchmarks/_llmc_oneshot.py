"""llm-compressor's oneshot on kenprune's calibration windows; run by vs_reference.py inside its own venv.

    /work/venv-llmc/bin/python benchmarks/_llmc_oneshot.py MODEL_DIR WINDOWS.pt wanda|sparsegpt SPARSITY|2:4 OUT_DIR

Prints one JSON line: {"seconds": oneshot wall time, "versions": {...}}; the pruned model is saved to OUT_DIR
(a Hugging Face folder) for kenprune's own evaluation loop to score.
"""
import json
import sys
import time

import torch


def main() -> None:
    model_dir, windows_path, method, setting, out = sys.argv[1:6]
    threads = int(sys.argv[6]) if len(sys.argv) > 6 else 2
    torch.set_num_threads(threads)
    import llmcompressor
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier
    from llmcompressor.modifiers.obcq import SparseGPTModifier
    from transformers import AutoModelForCausalLM

    windows = torch.load(windows_path)
    data = Dataset.from_dict({"input_ids": windows.tolist(), "attention_mask": torch.ones_like(windows).tolist()})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # "re:.*lm_head", as llm-compressor's docs write it: a plain "lm_head" does not match the name it checks
    # ("lm_head."), and 0.14 then prunes the head, i.e. smollm2's tied embedding table (seen in this benchmark)
    nm = setting if ":" in setting else "0:0"
    sparsity = 0.5 if ":" in setting else float(setting)
    cls = WandaPruningModifier if method == "wanda" else SparseGPTModifier
    modifier = cls(sparsity=sparsity, mask_structure=nm, targets=["Linear"], ignore=["re:.*lm_head"])
    start = time.perf_counter()
    oneshot(model=model, dataset=data, recipe=[modifier], num_calibration_samples=windows.shape[0],
            max_seq_length=windows.shape[1], pipeline="sequential", shuffle_calibration_samples=False)
    seconds = time.perf_counter() - start
    model.save_pretrained(out)
    print(json.dumps({"seconds": seconds, "versions": {"llmcompressor": llmcompressor.__version__,
                                                       "transformers": transformers.__version__,
                                                       "torch": torch.__version__}}))


if __name__ == "__main__":
    main()
