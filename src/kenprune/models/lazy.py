"""A model whose weights stay in their safetensors files until a block needs them.

    lazy = LazyModel.open("smollm2-135m")            # the skeleton: every parameter on the meta device
    lazy.load_rest()                                  # embeddings, final norm, head (what is not a block)
    lazy.load_block(3); ...; lazy.release_block(3)    # one block's tensors, read only while it is worked on
    lazy.weights_sha256()                             # == provenance.model_sha256 of the loaded model

Tensors are read with plain reads at the offsets of the safetensors header (each file's header is
checked with `safetensors.safe_open` first), straight into the tensor's memory: the file is never
mapped whole, so neither the resident set nor an address-space limit counts more than the tensors read. Each tensor is cast to the model's dtype exactly as `from_pretrained`
casts it, so a block read here equals the same block of `load_model(...)` bit for bit.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..errors import KenpruneError
from ..formats.stream import open_safetensors
from .blocks import block_prefix, find_blocks

INDEX_FILE = "model.safetensors.index.json"
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def weight_files(folder: str | Path) -> dict[str, Path]:
    """{tensor name: file} of a Hugging Face folder (one model.safetensors or shards with an index).

    Every file's header is read (no tensor is): a truncated, empty or garbled shard is refused here
    with one line naming it, before any work."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            names = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError):
            raise KenpruneError(f"{index} is not a safetensors index (no weight_map); save the model again") from None
        files = sorted({folder / f for f in names.values()})
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise KenpruneError(f"{folder} has no .safetensors weights; streaming reads safetensors folders only "
                            f"(convert it with save_pretrained, or use --stream off)")
    out: dict[str, Path] = {}
    for path in files:
        if not path.is_file():
            raise KenpruneError(f"{path} is missing (named in {index.name}); download or save the model again")
        with open_safetensors(path, hint="save or download the model again") as handle:
            for name in handle.keys():
                out[name] = path
    return out


_TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                 "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                 "BOOL": torch.bool}


def read_header(fh: Any) -> tuple[dict[str, Any], int]:
    """A safetensors file's header and where its data starts (the file was checked by `weight_files`)."""
    fh.seek(0)
    size = int.from_bytes(fh.read(8), "little")
    return json.loads(fh.read(size)), 8 + size


def read_tensor(fh: Any, entry: dict[str, Any], start: int) -> torch.Tensor:
    """One tensor read with plain file reads straight into its own memory: no mapping of the whole file
    (an address-space limit or the resident set would count it) and no intermediate copy."""
    begin, end = entry["data_offsets"]
    tensor = torch.empty(entry["shape"], dtype=_TORCH_DTYPES[entry["dtype"]])
    if end > begin:
        fh.seek(start + begin)
        view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
        if fh.readinto(view) != end - begin:
            raise KenpruneError(f"{fh.name} is truncated at tensor data [{begin}, {end}); save or download it again")
    return tensor


def header_bytes(files: Iterable[Path], itemsize: int | None = None) -> dict[str, int]:
    """Bytes of each tensor from the files' headers (at `itemsize` bytes per element when given)."""
    sizes: dict[str, int] = {}
    for path in sorted(set(files)):
        with open(path, "rb") as fh:
            header, _ = read_header(fh)
        for name, entry in header.items():
            if name != "__metadata__":
                numel = 1
                for s in entry["shape"]:
                    numel *= s
                sizes[name] = numel * (itemsize or _ITEMSIZE.get(entry["dtype"], 4))
    return sizes


def _set_tensor(module: nn.Module, name: str, value: torch.Tensor | nn.Parameter) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    if leaf in owner._parameters:
        owner._parameters[leaf] = value if isinstance(value, nn.Parameter) else nn.Parameter(value)
    else:
        owner._buffers[leaf] = value


def skeleton(config: Any, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The model of `config` with every parameter on the meta device (buffers such as rotary tables are
    real: they are computed, not loaded); tied weights tied, eval mode."""
    import transformers
    from accelerate import init_empty_weights

    architectures = getattr(config, "architectures", None) or []
    with init_empty_weights(include_buffers=False):
        cls = getattr(transformers, architectures[0], None) if architectures else None
        model = cls(config) if cls is not None else transformers.AutoModelForCausalLM.from_config(config)
    model.tie_weights()
    return model.eval()


@dataclass
class LazyModel:
    """A skeleton model plus where each of its tensors lies on disk."""

    model: nn.Module
    folder: Path
    files: dict[str, Path]
    dtype: torch.dtype = torch.float32
    tokenizer: Any = None
    name: str = ""
    source: str = ""
    bos: str = "auto"
    record: dict = field(default_factory=dict)
    _sha256: str | None = None
    _blocks: tuple[str, nn.ModuleList] | None = None  # found once: the skeleton's structure never changes

    @classmethod
    def open(cls, name_or_path: str | Path, *, dtype: torch.dtype = torch.float32,
             tokenizer: bool = True) -> "LazyModel":
        """The lazy model of a registry name, model folder or run folder (no weight is read)."""
        from transformers import AutoConfig, AutoTokenizer

        from .loading import CAUSAL_LM, _task_of_folder, read_record, resolve_model

        name, source, spec = resolve_model(str(name_or_path))
        if not Path(source).is_dir():
            raise KenpruneError(f"streaming reads a local safetensors folder; {name_or_path!r} is not one")
        task = spec.task if spec else _task_of_folder(source)
        if task != CAUSAL_LM:
            raise KenpruneError(f"{name} is {task!r}; streaming handles causal LMs")
        files = weight_files(source)
        config = AutoConfig.from_pretrained(source)
        config.dtype = dtype
        model = skeleton(config, dtype)
        record = read_record(source)
        return cls(model, Path(source), files, dtype, AutoTokenizer.from_pretrained(source) if tokenizer else None,
                   name, source, spec.bos if spec else record.get("bos", "auto"), record)

    # -- reading -----------------------------------------------------------------------------------------
    def state_names(self) -> list[str]:
        """The model's state_dict names in order (tied aliases included)."""
        return list(self.model.state_dict(keep_vars=True).keys())

    def aliases(self) -> dict[str, str]:
        """{later name: first name} for state_dict entries that are the same tensor (tied weights)."""
        first: dict[int, str] = {}
        out: dict[str, str] = {}
        for name, tensor in self.model.state_dict(keep_vars=True).items():
            if id(tensor) in first:
                out[name] = first[id(tensor)]
            else:
                first[id(tensor)] = name
        return out

    def _file_name(self, name: str) -> str | None:
        """The name a tensor is stored under: its own, or that of the tensor it is tied to."""
        if name in self.files:
            return name
        alias = self.aliases().get(name)
        if alias is not None and alias in self.files:
            return alias
        tied = [n for n, a in self.aliases().items() if a == name and n in self.files]
        return tied[0] if tied else None

    def read(self, names: Iterable[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) read from the files, each cast as from_pretrained casts it (floating -> dtype)."""
        wanted = [(n, self._file_name(n)) for n in names]
        by_file: dict[Path, list[tuple[str, str]]] = {}
        for name, stored in wanted:
            if stored is None:
                raise KenpruneError(f"{self.folder} has no tensor {name!r}; the folder does not match its config.json")
            by_file.setdefault(self.files[stored], []).append((name, stored))
        for path, entries in sorted(by_file.items()):
            with open(path, "rb") as fh:
                header, start = read_header(fh)
                for name, stored in entries:
                    tensor = read_tensor(fh, header[stored], start)
                    yield name, tensor.to(self.dtype) if tensor.is_floating_point() else tensor

    def _load(self, module: nn.Module, prefix: str, skip: str | None = None) -> None:
        todo: dict[int, tuple[torch.Tensor, list[str]]] = {}  # tied tensors: one read, every name set
        for name, tensor in module.state_dict(keep_vars=True).items():
            if tensor.device.type == "meta" and not (skip and (prefix + name).startswith(skip)):
                todo.setdefault(id(tensor), (tensor, []))[1].append(name)
        first = {prefix + names[0]: (tensor, names) for tensor, names in todo.values()}
        for full, value in self.read(first):
            tensor, names = first[full]
            param = nn.Parameter(value) if isinstance(tensor, nn.Parameter) else value
            for name in names:
                _set_tensor(module, name, param)

    @staticmethod
    def _release(module: nn.Module, skip: str | None = None, prefix: str = "") -> None:
        done: dict[int, torch.Tensor] = {}
        for name, tensor in list(module.named_parameters(remove_duplicate=False)):
            if skip and (prefix + name).startswith(skip):
                continue
            if id(tensor) not in done:
                done[id(tensor)] = nn.Parameter(torch.empty_like(tensor, device="meta"), tensor.requires_grad)
            _set_tensor(module, name, done[id(tensor)])

    def blocks(self) -> tuple[str, nn.ModuleList]:
        if self._blocks is None:
            self._blocks = find_blocks(self.model)
        return self._blocks

    def load_block(self, index: int) -> nn.Module:
        blocks_name, blocks = self.blocks()
        self._load(blocks[index], block_prefix(blocks_name, index) + ".")
        return blocks[index]

    def release_block(self, index: int) -> None:
        self._release(self.blocks()[1][index])

    def load_rest(self) -> None:
        """Everything that is not a block: embeddings, final norm, head (tied ones once)."""
        blocks_name, _ = self.blocks()
        self._load(self.model, "", skip=blocks_name + ".")

    def release_rest(self) -> None:
        blocks_name, _ = self.blocks()
        self._release(self.model, skip=blocks_name + ".")

    @contextlib.contextmanager
    def rest_loaded(self) -> Iterator[nn.Module]:
        self.load_rest()
        try:
            yield self.model
        finally:
            self.release_rest()

    # -- sizes and identity ------------------------------------------------------------------------------
    def tensor_bytes(self) -> dict[str, int]:
        """Bytes of each stored tensor once loaded (at the model's dtype for floating tensors)."""
        return header_bytes(self.files.values(), torch.tensor([], dtype=self.dtype).element_size())

    def weights_bytes(self) -> int:
        return sum(self.tensor_bytes().values())

    def block_bytes(self) -> list[int]:
        blocks_name, blocks = self.blocks()
        sizes = self.tensor_bytes()
        return [sum(v for k, v in sizes.items() if k.startswith(block_prefix(blocks_name, i) + "."))
                for i in range(len(blocks))]

    def weights_sha256(self) -> str:
        """`provenance.model_sha256` of the loaded model, read one tensor at a time."""
        if self._sha256 is None:
            self._sha256 = streamed_sha256(self)
        return self._sha256

    def loaded(self) -> Any:
        """A LoadedModel over the skeleton (weights hash precomputed from the files): its identity, its
        tokenizer and BOS policy, for code that takes one (evaluation protocols, records)."""
        from .loading import CAUSAL_LM, LoadedModel

        @dataclass
        class StreamedModel(LoadedModel):
            """A LoadedModel whose perplexity is computed block by block (`streamed_nll`)."""

            lazy: Any = None
            device: Any = None
            activation_budget: int = 1 << 62
            spill_dir: Any = None

            def streamed_nll(self, windows: torch.Tensor, **options: Any) -> torch.Tensor:
                from ..engine.streaming import streamed_window_nll

                return streamed_window_nll(self.lazy, windows, device=self.device,
                                           activation_budget=self.activation_budget, spill_dir=self.spill_dir,
                                           **options)

        return StreamedModel(self.model, self.tokenizer, self.name, self.source, CAUSAL_LM, self.bos, self.record,
                             _sha256=self.weights_sha256(), lazy=self)

    def identity(self) -> dict[str, Any]:
        return self.loaded().identity()


def streamed_sha256(lazy: LazyModel) -> str:
    """What `provenance.tensors_sha256(model.state_dict())` gives for the loaded model: names in sorted
    order, tied tensors once under their first sorted name, each tensor read alone."""
    state = lazy.model.state_dict(keep_vars=True)
    digest = hashlib.sha256()
    seen: set[int] = set()
    for name in sorted(state):
        tensor = state[name]
        if tensor.numel() and id(tensor) in seen:
            continue
        seen.add(id(tensor))
        if tensor.device.type == "meta":
            _, tensor = next(lazy.read([name]))
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        if tensor.numel():
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def folder_sha256(folder: str | Path) -> str:
    """The weights hash of a saved model folder (== model_sha256 of it loaded), one tensor in memory at a time."""
    return LazyModel.open(folder, tokenizer=False).weights_sha256()
