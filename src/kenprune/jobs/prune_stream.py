"""The streamed path of `kenprune prune`: which path runs, and the work folder a streamed run resumes from.

`memory_plan` decides (settings.stream, settings.max_memory, the weights' size from the file headers);
`StreamedPrune` owns the checkpoint folder beside the output (engine/checkpoint.py): it builds the
PruneStream for `prune_model`, assembles the output there, and moves it into the output folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ..engine.checkpoint import BlockSink, checkpoint_folder
from ..engine.streaming import PruneStream, plan, streamed_scores
from ..errors import KenpruneError, describe
from ..measure import current_rss_bytes
from ..models.lazy import LazyModel
from ..settings import Evaluation, Output, PruneSettings

ASSEMBLED = "output"
SCORES = "scores"  # an allocation's dense scores, one file per layer, dropped once it is chosen


def memory_plan(model: str, settings: PruneSettings) -> tuple[dict[str, Any], LazyModel | None]:
    """details["memory"] for the run, and the LazyModel when it streams (None: load it whole)."""
    from ..models.loading import resolve_model

    if settings.stream == "off":
        return {"path": "in-memory", "reason": "--stream off"}, None
    try:
        _, source, _ = resolve_model(model)
    except KenpruneError:
        if settings.stream == "on":
            raise
        return {"path": "in-memory", "reason": "not a model folder kenprune can resolve before loading"}, None
    local = Path(source).is_dir() and (any(Path(source).glob("*.safetensors")))
    if not local:
        if settings.stream == "on":
            raise KenpruneError(f"--stream on reads a local safetensors folder; {model!r} is not one")
        return {"path": "in-memory", "reason": "not a local safetensors folder"}, None
    from ..models.loading import LOADER_KEY

    try:
        if LOADER_KEY in json.loads((Path(source) / "config.json").read_text()):
            raise KenpruneError(f"{model} is rebuilt by a kenprune loader (structured widths), not from its config")
        lazy = LazyModel.open(source, tokenizer=False)
    except Exception as exc:  # noqa: BLE001 - auto falls back to the in-memory path, which has its own errors
        if settings.stream == "on":
            if isinstance(exc, KenpruneError):
                raise
            raise KenpruneError(f"--stream on cannot stream {model}: {describe(exc)}") from None
        return {"path": "in-memory", "reason": f"cannot stream it: {describe(exc)}"}, None
    memory = plan(lazy.weights_bytes(), lazy.block_bytes(), settings.max_memory, settings.stream)
    memory["runtime_rss_bytes"] = current_rss_bytes()  # measured: the Python runtime before any weight
    if memory["path"] != "streamed":
        return memory, None
    full = LazyModel.open(model)  # with the tokenizer, name and BOS policy of the registry entry
    return memory, full


def check_streamable(settings: PruneSettings, evaluation: Evaluation, federated: Any = None) -> None:
    """What the streamed path does not do yet, refused in one line before any work."""
    if federated is not None and federated.clients and (federated.workers != 1 or federated.ray_address):
        from ..federated.rounds import STREAMED_RAY_REFUSAL

        raise KenpruneError(STREAMED_RAY_REFUSAL)
    if federated is not None and settings.allocation is not None:
        raise KenpruneError("--allocation with federated calibration runs in memory only (its scoring round is not "
                            "streamed yet); use --stream off, or a uniform sparsity")


class StreamedPrune:
    """The work folder of one streamed prune (OUT.checkpoint, or a temporary folder without --out)."""

    def __init__(self, lazy: LazyModel, output: Output, fingerprint: dict[str, Any], memory: dict[str, Any], *,
                 nm: tuple[int, int] | None, sparse_dtype: torch.dtype | None) -> None:
        self.lazy, self.memory = lazy, memory
        self.scoring: dict[str, Any] = {}
        self.temporary = output.folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="kenprune-stream-")) if self.temporary else \
            checkpoint_folder(output.folder)
        digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()
        self.sink = BlockSink(lazy, self.folder, digest, nm=nm, sparse_dtype=sparse_dtype)
        # a checkpoint of the same settings is resumed (to the same bytes); another one only goes with --overwrite
        self.stream = PruneStream(lazy, self.sink, discard_other=output.overwrite,
                                  activation_budget=memory["activation_budget_bytes"], spill_dir=self.folder / "spill")

    def details(self) -> dict[str, Any]:
        return {**self.memory, "checkpoint": None if self.temporary else str(self.folder),
                "resumed_from_block": self.stream.resumed_from, "activations_bytes": self.stream.activation_bytes,
                "spilled_bytes": self.stream.spilled_bytes, **self.scoring}

    def layer_source(self, windows: torch.Tensor | None, *, method: str, batch_size: int, dtype: str | None,
                     progress: bool) -> Callable[[bool], list[Any]]:
        """For `resolve_allocation`: the layers, scored (when the allocator needs it) by a streamed dense
        pass whose scores live in files under the work folder until `drop_scores`."""
        from ..allocate.model import model_layers

        def source(needs_scores: bool) -> list[Any]:
            if not needs_scores:
                return model_layers(self.lazy.model)
            scores = streamed_scores(self.lazy, windows, self.folder / SCORES, method=method, batch_size=batch_size,
                                     dtype=dtype, activation_budget=self.memory["activation_budget_bytes"],
                                     progress=progress)
            self.scoring = {"scores_file_bytes": sum(p.stat().st_size for p in (self.folder / SCORES).glob("*.bin")),
                            "scoring_pass": "streamed, scores in files read back a block at a time"}
            return model_layers(self.lazy.model, scores)

        return source

    def drop_scores(self) -> None:
        shutil.rmtree(self.folder / SCORES, ignore_errors=True)

    def assemble(self, tokenizer: Any, extra: dict[str, Any], model_dir: str, sparse_file: str) -> dict[str, Any]:
        """The output files in the work folder; save_sparse's summary of the sparse file."""
        out = self.folder / ASSEMBLED
        shutil.rmtree(out, ignore_errors=True)
        return self.sink.assemble(out / model_dir, out / sparse_file, tokenizer, extra)

    def pruned(self, model_dir: str) -> Any:
        """The pruned model, streamed from the assembled folder (for the evaluation after)."""
        lazy = LazyModel.open(self.folder / ASSEMBLED / model_dir)
        lazy.name, lazy.bos = self.lazy.name, self.lazy.bos
        loaded = lazy.loaded()
        loaded.activation_budget, loaded.spill_dir = self.memory["activation_budget_bytes"], self.folder / "spill"
        return loaded

    def move_into(self, folder: Path) -> None:
        for entry in (self.folder / ASSEMBLED).iterdir():
            os.replace(entry, folder / entry.name)

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
