"""The block sink of a streamed prune: each finished block written to disk and freed, resumable after a kill.

A work folder (beside the output: OUT.checkpoint) holds, as blocks finish,
    shards/model-0000K-of-0000N.safetensors   block K-1's dense tensors (the last shard: embeddings, norm, head)
    sparse/0000K.safetensors                  the same tensors encoded for the sparse file (+ their entries)
    hidden.safetensors                        the calibration activations entering the next block
    state.json                                the next block, the finished blocks' sparsity rows, RNG state,
                                              and a fingerprint of the run (model hash + settings)
Each file is written atomically and state.json last, so after SIGKILL the same command continues from
the block after the last one whose state.json was written. `assemble` turns the folder into the
output: a Hugging Face folder (the shards + model.safetensors.index.json) and the sparse file, the
latter byte-identical to `save_sparse` of the same weights (the parts are copied in state_dict order).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..errors import KenpruneError
from ..fileio import write_json
from ..formats.sparse import encode_tensor, manifest_json, part_name, summary
from ..formats.stream import open_safetensors, write_safetensors
from ..models.blocks import block_prefix
from ..models.lazy import INDEX_FILE, LazyModel

STATE_FILE = "state.json"
HIDDEN_FILE = "hidden.safetensors"
KILL_ENV = "KENPRUNE_KILL_AFTER_BLOCK"  # tests: SIGKILL this process once block K is checkpointed


def checkpoint_folder(out: str | Path) -> Path:
    """Where a streamed run into `out` keeps its finished blocks until the output is complete."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoint")


class BlockSink:
    """Writes finished blocks of a LazyModel into `folder`; reads back what an interrupted run wrote."""

    def __init__(self, lazy: LazyModel, folder: Path, fingerprint: str, *, nm: tuple[int, int] | None = None,
                 sparse_dtype: torch.dtype | None = None) -> None:
        self.lazy, self.folder, self.fingerprint = lazy, Path(folder), fingerprint
        self.nm, self.sparse_dtype = nm, sparse_dtype
        self.blocks_name, blocks = lazy.blocks()
        self.count = len(blocks)
        self.aliases = lazy.aliases()
        self.state: dict[str, Any] = {"fingerprint": fingerprint, "next_block": 0, "layers": [],
                                      "tensors": {}}

    # -- names -------------------------------------------------------------------------------------------
    def shard_name(self, k: int) -> str:
        """Shard k (0-based; k == blocks: the rest), named as transformers names shards."""
        return f"model-{k + 1:05d}-of-{self.count + 1:05d}.safetensors"

    def _part_file(self, k: int) -> Path:
        return self.folder / "sparse" / f"{k + 1:05d}.safetensors"

    def _shard_of(self, name: str) -> int:
        for k in range(self.count):
            if name.startswith(block_prefix(self.blocks_name, k) + "."):
                return k
        return self.count

    # -- resume ------------------------------------------------------------------------------------------
    def resume(self, discard_other: bool = False) -> int:
        """The next block to work on: 0, or where an interrupted run of the same settings stopped. A checkpoint
        of other settings is an error, or is discarded with `discard_other` (--overwrite)."""
        path = self.folder / STATE_FILE
        if not path.is_file():
            return 0
        try:
            state = json.loads(path.read_text())
        except ValueError:
            return 0  # never written whole: start again
        if state.get("fingerprint") != self.fingerprint:
            if discard_other:
                self.discard()
                return 0
            raise KenpruneError(f"{self.folder} holds a checkpoint of another run (other model or settings); "
                                f"remove it, pass --overwrite to start afresh, or rerun with the settings that "
                                f"made it")
        self.state = state
        if state.get("rng"):
            torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["rng"])), dtype=torch.uint8))
        return int(state["next_block"])

    def saved_hidden(self) -> list[torch.Tensor]:
        with open_safetensors(self.folder / HIDDEN_FILE, hint="remove the checkpoint folder and run again") as f:
            return [f.get_tensor(str(b)) for b in range(len(f.keys()))]

    # -- writing -----------------------------------------------------------------------------------------
    def _write(self, k: int, module: nn.Module, prefix: str, skip: str | None = None) -> None:
        """Shard k and its sparse parts from `module`'s tensors (tied aliases once, as save_pretrained)."""
        dense: list[tuple[str, torch.Tensor]] = []
        entries: dict[str, Any] = {}
        parts: list[tuple[str, torch.Tensor]] = []
        for name, tensor in module.state_dict().items():
            full = prefix + name
            if full in self.aliases or (skip and full.startswith(skip)):
                continue
            dense.append((full, tensor))
            entry, encoded = encode_tensor(tensor, nm=self.nm, dtype=self.sparse_dtype)
            entries[full] = {**entry, "parts": list(encoded)}
            parts += [(part_name(full, p), v) for p, v in encoded.items()]
            self.state["tensors"][full] = self.shard_name(k)
        write_safetensors(self.folder / "shards" / self.shard_name(k), dense, {"format": "pt"})
        write_safetensors(self._part_file(k), parts, {"entries": json.dumps(entries)})

    def write_block(self, index: int, block: nn.Module, hidden: list[torch.Tensor] | None,
                    layers: list[dict[str, Any]]) -> None:
        """Block `index` done: its shard, its sparse parts, the next block's inputs, then state.json."""
        self._write(index, block, block_prefix(self.blocks_name, index) + ".")
        if hidden is not None and index + 1 < self.count:
            write_safetensors(self.folder / HIDDEN_FILE, ((str(b), h) for b, h in enumerate(hidden)))
        self.state["layers"] = [x for x in self.state["layers"] if x["block"] != index] + layers
        self.state["next_block"] = index + 1
        self.state["rng"] = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
        write_json(self.folder / STATE_FILE, self.state)
        if os.environ.get(KILL_ENV) == str(index):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    def write_rest(self, model: nn.Module) -> None:
        """Everything outside the blocks (loaded in `model`), the last shard."""
        self._write(self.count, model, "", skip=self.blocks_name + ".")

    # -- output ------------------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """The sparsity report (as `sparsity_report`) from the finished blocks' rows and the written shards."""
        layers = sorted(self.state["layers"], key=lambda x: x["block"])  # stable: each block's own order
        linear_params = sum(x["parameters"] for x in layers)
        linear_zeros = sum(x["zeros"] for x in layers)
        parameters = {name for name, _ in self.lazy.model.named_parameters()}  # tied ones once, no buffers
        total = zeros = 0
        for k in range(self.count + 1):
            with open_safetensors(self.folder / "shards" / self.shard_name(k)) as f:
                for name in f.keys():
                    if name in parameters:
                        t = f.get_tensor(name)
                        total += t.numel()
                        zeros += t.numel() - int(torch.count_nonzero(t))
        return {"block_linears": {"parameters": linear_params, "zeros": linear_zeros,
                                  "sparsity": linear_zeros / max(linear_params, 1)},
                "overall": {"parameters": total, "zeros": zeros, "sparsity": zeros / max(total, 1)},
                "layers": layers}

    def _parts_in_order(self, names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """Every tensor's parts in `names` order, one part file open at a time."""
        entries: dict[str, Any] = {}
        current: tuple[int, Any, Any] | None = None
        try:
            for name in names:
                k = self._shard_of(name)
                if current is None or current[0] != k:
                    if current is not None:
                        current[1].__exit__(None, None, None)
                    manager = open_safetensors(self._part_file(k), hint="remove the checkpoint folder and run again")
                    handle = manager.__enter__()
                    current = (k, manager, handle)
                    entries = json.loads(handle.metadata()["entries"])
                for part in entries[name]["parts"]:
                    yield part_name(name, part), current[2].get_tensor(part_name(name, part))
        finally:
            if current is not None:
                current[1].__exit__(None, None, None)

    def assemble(self, model_dir: Path, sparse_path: Path, tokenizer: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
        """The output: `model_dir` (shards moved in, index, config, tokenizer, kenprune.json) and the sparse
        file; returns save_sparse's summary of it."""
        from ..models.loading import RECORD_FILE

        model = self.lazy.model
        names = [n for n in self.lazy.state_names() if n not in self.aliases]
        entries: dict[str, Any] = {}
        for k in range(self.count + 1):
            with open_safetensors(self._part_file(k)) as f:
                entries.update(json.loads(f.metadata()["entries"]))
        manifest = {n: {k: v for k, v in entries[n].items() if k != "parts"} for n in names}
        config = model.config.to_dict()
        write_safetensors(sparse_path, self._parts_in_order(names),
                          {"kenprune": manifest_json(manifest, self.aliases, config, type(model).__name__)})
        model_dir.mkdir(parents=True, exist_ok=True)
        total = 0
        for k in range(self.count + 1):
            shard = self.folder / "shards" / self.shard_name(k)
            total += shard.stat().st_size
            try:  # a hard link: no copy, and the checkpoint stays whole until the output is in place
                os.link(shard, model_dir / self.shard_name(k))
            except OSError:
                shutil.copyfile(shard, model_dir / self.shard_name(k))
        write_json(model_dir / INDEX_FILE, {"metadata": {"total_size": total},
                                            "weight_map": {n: self.state["tensors"][n] for n in names}})
        model.config.save_pretrained(model_dir)
        if getattr(model, "generation_config", None) is not None and model.can_generate():
            model.generation_config.save_pretrained(model_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(model_dir)
        write_json(model_dir / RECORD_FILE, dict(extra))
        return summary(sparse_path, manifest, self.nm, self.sparse_dtype)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
