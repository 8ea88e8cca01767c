"""`kenprune ken` and `kenprune ken apply`: KEN on a (pre-trained, fine-tuned) pair, and the rebuild.

Pre-trained side of a classifier: a pre-trained encoder has no classification head, so KEN's base
for a classifier is the fine-tuned model's own starting point, which `kenprune finetune` saves as
`<finetuned>/initial`. When the pre-trained model is left out, the fine-tuned folder's record supplies
it (`initial/`, else the base model's name).
"""
from __future__ import annotations

import logging
from pathlib import Path

from .. import provenance
from ..errors import KenpruneError
from ..measure import StageTimer, path_bytes
from ..record import FileEntry, Layer, RunRecord
from ..settings import KEN_EVALUATION, Evaluation, KenSettings, Output, given
from .common import check_output, new_record, output_folder, write_record

log = logging.getLogger(__name__)
SUBNETWORK_FILE = "subnetwork.safetensors"
MODEL_DIR = "model"


def run(finetuned: str, settings: KenSettings = KenSettings(), *, pretrained: str | None = None,
        evaluation: Evaluation = KEN_EVALUATION, output: Output = Output(), progress: bool = True) -> RunRecord:
    """KEN: OUT/subnetwork.safetensors (and OUT/model with settings.save_model) plus run.json; evaluates
    the optimized model on evaluation.data when given (accuracy or perplexity, by the model's task)."""
    from ..ken.apply import KSpec, tensor_table
    from ..ken.pair import finetuned_bytes, ken_models, load_pair
    from ..ken.selections import label_of
    from ..ken.subnetwork import write_subnetwork
    from ..models.loading import LoadedModel, save_model

    if not finetuned:
        raise KenpruneError("give the fine-tuned model: --finetuned FOLDER")
    settings.check()
    evaluation.check()
    check_output(output, [finetuned, pretrained])
    spec = KSpec.parse(settings.k)
    timer = StageTimer()
    with timer.stage("load"):
        pre, ft = load_pair(pretrained, finetuned)
    with timer.stage("ken"):
        result = ken_models(pre, ft, spec, kernel=settings.kernel, tensors=settings.tensors, include=settings.include,
                            exclude=settings.exclude, value_dtype=settings.value_dtype,
                            selection=settings.row_selection(), seed=settings.seed,
                            allocation=settings.allocation, progress=progress)
    optimized, sub, selection = result.optimized, result.subnetwork, result.selection
    ft_params, names, copied = result.finetuned_params, list(selection.masks), sub.meta["copied"]
    record = new_record("ken", ft.identity(), "ken",
                        given(finetuned=finetuned, pretrained=pretrained, ken=settings, evaluation=evaluation),
                        {"ken": {**settings.to_dict(), "k": str(spec)}, "pretrained": pre.source,
                         "evaluation": evaluation.to_dict()})
    opt_loaded = LoadedModel(optimized, ft.tokenizer, f"{ft.name}-ken", str(output.folder), ft.task, ft.bos)
    with output_folder(output) as tmp:
        if tmp is not None:
            with timer.stage("write"):
                meta = write_subnetwork(tmp / SUBNETWORK_FILE, sub, settings.value_dtype)
                record.files.append(FileEntry(SUBNETWORK_FILE, "ken-subnetwork", path_bytes(tmp / SUBNETWORK_FILE),
                                              "subnetwork"))
                if settings.save_model:
                    save_model(opt_loaded, tmp / MODEL_DIR, {"ken": {"subnetwork": SUBNETWORK_FILE,
                                                                      "base": meta["base"]}})
                    record.files.append(FileEntry(MODEL_DIR, "hf-folder", path_bytes(tmp / MODEL_DIR), "model"))
        if evaluation.enabled:
            with timer.stage("eval"):
                judge(record, opt_loaded, label_of(sub.meta["method"]), pre, ft, evaluation, progress)
        total_params = sum(p.numel() for p in ft_params.values())
        kept = selection.kept()
        selected = sum(ft_params[n].numel() for n in names)
        copied_whole = sum(ft_params[n].numel() for n in copied)
        table = tensor_table(selection)
        record.layer_quantity = "kept fraction"
        record.layers = [Layer(n, list(ft_params[n].shape), t["kept_fraction"], parameters=ft_params[n].numel())
                         for n, t in table.items()]
        record.details.update({
            "k": str(spec), "kernel": settings.kernel, "value_dtype": settings.value_dtype,
            "method": sub.meta["method"], "seed": sub.meta["seed"],
            "sparsity": 1 - kept / max(selected, 1),
            "pretrained": sub.meta["base"], "finetuned": sub.meta["finetuned"],
            "optimized_sha256": sub.meta["optimized_sha256"], "selection": sub.meta["selection"],
            "clipped_tensors": selection.clipped, "allocation": sub.meta["allocation"],
            "totals": {"parameters": total_params, "selected_parameters": selected, "kept": kept,
                       "copied_whole": copied_whole, "kept_fraction_of_selected": kept / max(selected, 1),
                       "stored_fraction": (kept + copied_whole) / total_params},
            "tensors": {n: {**t, "encoding": meta["tensors"][n]["encoding"]} for n, t in table.items()}
            if tmp is not None else table,
        })
        if tmp is not None:
            sub_bytes, ft_bytes = path_bytes(tmp / SUBNETWORK_FILE), finetuned_bytes(ft)
            record.details["sizes"] = {"subnetwork_bytes": sub_bytes, "finetuned_safetensors_bytes": ft_bytes,
                                       "ratio": sub_bytes / max(ft_bytes, 1)}
        if selection.clipped:
            log.warning("k = %s exceeds the row length of %d tensors (%s, ...): they keep every entry",
                        spec, len(selection.clipped), selection.clipped[0])
        write_record(record, tmp, timer)
    return record


def judge(record: RunRecord, optimized, label: str, pre, ft, evaluation: Evaluation, progress: bool) -> None:
    """Evaluate the optimized model, then the pre-trained and fine-tuned models it is judged against."""
    from ..evaluate import evaluate

    record.quality.append(evaluate(optimized, evaluation, role="after", label=label, progress=progress))
    for side, loaded in (("pre-trained", pre), ("fine-tuned", ft)):
        record.quality.append(evaluate(loaded, evaluation, role="reference", label=side, progress=progress))


def apply(base: str, subnetwork: str | Path, out: str | Path, *, overwrite: bool = False,
          progress: bool = True) -> RunRecord:
    """`kenprune ken apply`: rebuild the optimized model from its base and a subnetwork file, bit-identically.

    The base must be the model the subnetwork was made from: same weights, and (for files that record
    them) the same config, tokenizer and label names."""
    from ..ken.pair import check_base, rebuild
    from ..ken.subnetwork import read_subnetwork
    from ..models.loading import load_model, save_model

    output = Output(Path(out), overwrite)
    check_output(output, [base, subnetwork])
    timer = StageTimer()
    with timer.stage("load"):
        sub = read_subnetwork(subnetwork)
        recorded = sub.meta["base"]
        loaded = load_model(base, task=recorded.get("task"))
    check_base(loaded, recorded, base)
    with timer.stage("rebuild"):
        rebuild(loaded.model, sub)
        loaded._sha256 = None
        rebuilt = loaded.weights_sha256()
    if rebuilt != sub.meta["optimized_sha256"]:
        raise KenpruneError(f"{subnetwork} rebuilt a model whose hash {provenance.short(rebuilt)} differs from the "
                            f"recorded {provenance.short(sub.meta['optimized_sha256'])}; the file is corrupt")
    record = new_record("ken-apply", loaded.identity(), "ken", given(base=base, subnetwork=str(subnetwork)),
                        {"base": loaded.source, "subnetwork": str(Path(subnetwork).resolve())})
    record.details.update({"subnetwork": str(subnetwork), "base": recorded, "optimized_sha256": rebuilt,
                           "bit_identical": True})
    with output_folder(output) as tmp:
        with timer.stage("save"):
            save_model(loaded, tmp, {"ken": {"subnetwork": str(subnetwork), "base": recorded,
                                             "optimized_sha256": rebuilt}})
        record.files = [FileEntry(".", "hf-folder", path_bytes(tmp), "model")]
        write_record(record, tmp, timer)
    return record

def ken(finetuned: str, *, pretrained: str | None = None, evaluation: Evaluation = KEN_EVALUATION,
        out: str | Path | None = None, overwrite: bool = False, progress: bool = True, **options) -> RunRecord:
    """`run` with KenSettings given as keywords, e.g. `ken("ft/", k="25%", out="ken/")`."""
    return run(finetuned, KenSettings(**options), pretrained=pretrained, evaluation=evaluation, output=Output(out, overwrite),
               progress=progress)
