"""KEN_viz for any model: which entries KEN kept, in one matrix, as neighbour counts, and across layers.

The official KEN_viz (algorithms.md 1.4) is a notebook widget hard-coded to 12 square BERT matrices.
Here a kept mask is `optimized != pretrained` (the entries KEN replaced with fine-tuned values), read
lazily from safetensors so only the chosen matrix family is loaded; the figures come from
kenprune.report.figures and work for any number of layers and any shape.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import KenpruneError
from . import figures

_DIGITS = re.compile(r"\d+")


def _open(path: str | Path):
    """safetensors' safe_open with kenprune's one-line error for a damaged file (torch imported only now)."""
    from ..formats.stream import open_safetensors

    return open_safetensors(path)


def _layer_key(name: str) -> tuple:
    return tuple(int(x) for x in _DIGITS.findall(name)) + (name,)


def matrix_family(pattern: str, names: Iterable[str]) -> list[str]:
    """Tensor names of one matrix type across layers, ordered by layer.

    `pattern` may be a full name (its layer numbers match any layer, as in KEN_viz), a glob with `*`,
    or a fragment such as `q_proj`; with several matrix types matching, the error lists them.
    """
    names = list(names)
    regex = re.escape(pattern).replace(r"\*", ".*")
    regex = _DIGITS.sub(r"\\d+", regex)
    matches = [n for n in names if re.fullmatch(regex, n)] or [n for n in names if re.search(regex, n)]
    if not matches:
        types = sorted({figures.matrix_type(n) for n in names})
        raise KenpruneError(f"no tensor matches --matrix {pattern!r}; matrix types in this model include: "
                            f"{', '.join(types[:12])}{' ...' if len(types) > 12 else ''}")
    types = sorted({figures.matrix_type(n) for n in matches})
    weights = [n for n in matches if n.endswith(".weight")]
    if len(types) > 1 and weights and len({figures.matrix_type(n) for n in weights}) == 1:
        matches, types = weights, [figures.matrix_type(weights[0])]  # `query` means the matrix, not its bias
    if len(types) > 1:
        raise KenpruneError(f"--matrix {pattern!r} matches {len(types)} matrix types ({', '.join(types[:6])}); "
                            f"give a longer pattern, e.g. {types[0].replace('N', '0')!r}")
    return sorted(matches, key=_layer_key)


class TensorSource:
    """Named tensors from a model folder, a .safetensors file or a registry model, loaded one at a time."""

    def __init__(self, ref: str | Path):
        self.ref = str(ref)
        path = Path(ref)
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path] if path.suffix == ".safetensors" else []
        self._index: dict[str, Path] = {}
        self._state: dict | None = None
        if files:
            for f in files:
                with _open(f) as handle:
                    self._index.update(dict.fromkeys(handle.keys(), f))
        elif path.exists():
            raise KenpruneError(f"{path} holds no .safetensors weights; give a saved model folder or a .safetensors file")
        elif path.is_absolute() or self.ref.startswith(".") or path.suffix == ".safetensors":
            raise KenpruneError(f"{path} does not exist; give a saved model folder, a .safetensors file or a model name")
        else:
            from ..models.loading import load_model  # a registry name or hub id: load the model once

            self._state = {k: v.detach() for k, v in load_model(self.ref).model.state_dict().items()}

    def names(self) -> list[str]:
        return list(self._index) if self._state is None else list(self._state)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        if self._state is not None:
            return {n: tuple(t.shape) for n, t in self._state.items()}
        out: dict[str, tuple[int, ...]] = {}
        for f in dict.fromkeys(self._index.values()):
            with _open(f) as handle:
                out.update({n: tuple(handle.get_slice(n).get_shape()) for n in handle.keys()})
        return out

    def get(self, name: str) -> np.ndarray:
        if self._state is not None:
            if name not in self._state:
                raise KenpruneError(f"{self.ref} has no tensor {name!r}")
            return self._state[name].float().numpy()
        if name not in self._index:
            raise KenpruneError(f"{self.ref} has no tensor {name!r}")
        with _open(self._index[name]) as handle:
            return handle.get_tensor(name).float().numpy()


def default_matrix(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The first per-layer 2-D matrix (name -> shape), e.g. layer 0's query: what a report shows by default."""
    return next((n for n, shape in shapes.items() if _DIGITS.search(n) and len(shape) == 2), None)


@dataclass
class KenMasks:
    """Kept masks of one matrix type across layers (name -> bool array), plus every tensor's kept fraction."""
    pattern: str
    masks: dict[str, np.ndarray]

    def fractions(self) -> dict[str, float]:
        return {name: float(m.mean()) for name, m in self.masks.items()}

    def labels(self) -> dict[str, str]:
        """Short per-layer labels: the layer numbers that differ between names ('layer 3')."""
        return {n: "layer " + ".".join(_DIGITS.findall(n)) if _DIGITS.search(n) else n for n in self.masks}


def kept_mask(pretrained: np.ndarray, optimized: np.ndarray, name: str = "") -> np.ndarray:
    """Entries KEN kept: where the optimized tensor differs from the pre-trained one."""
    if pretrained.shape != optimized.shape:
        raise KenpruneError(f"{name}: shapes differ ({pretrained.shape} vs {optimized.shape}); "
                            f"the optimized model was not made from this pre-trained model")
    return np.asarray(pretrained != optimized)


SUBNETWORK_FORMAT = "kenprune-subnetwork"  # the `format` metadata of a `kenprune ken` subnetwork file


def is_subnetwork(path: str | Path) -> bool:
    """Whether `path` is a KEN subnetwork file (kept positions stored directly, no base model needed)."""
    path = Path(path)
    if not (path.is_file() and path.suffix == ".safetensors"):
        return False
    with _open(path) as handle:
        return (handle.metadata() or {}).get("format") == SUBNETWORK_FORMAT


def subnetwork_masks(path: str | Path) -> dict[str, np.ndarray]:
    """Kept masks straight from a subnetwork file's positions (read and verified by kenprune.ken)."""
    try:
        from ..ken.subnetwork import read_subnetwork
    except ImportError:
        raise KenpruneError("reading a subnetwork file needs kenprune's KEN module (kenprune.ken.subnetwork); "
                            "give the optimized model folder and --pretrained instead") from None
    return {name: mask.numpy() for name, mask in read_subnetwork(path).masks.items()}


def family_masks(matrix: str, masks: dict[str, np.ndarray]) -> KenMasks:
    """The masks of one matrix family picked out of a model's masks."""
    return KenMasks(matrix, {n: masks[n] for n in matrix_family(matrix, masks)})


def inside_run(ref: str | Path | None) -> str | Path | None:
    """What a run folder holds for KEN_viz: its subnetwork file, else its model folder (any other ref as given)."""
    if ref is None or not Path(ref).is_dir():
        return ref
    from ..record import is_run_folder, read

    if not is_run_folder(ref) or (Path(ref) / "config.json").exists():
        return ref
    record = read(ref)
    entry = record.file("subnetwork") or record.file("model")
    return Path(ref) / entry.path if entry is not None else ref


def load_masks(pretrained: str | Path | None, optimized: str | Path, matrix: str) -> KenMasks:
    """Kept masks of the matrix family `matrix`: from a subnetwork file's positions, or by comparing
    the optimized model with the pre-trained one (folders, run folders, .safetensors files or registry names)."""
    pretrained, optimized = inside_run(pretrained), inside_run(optimized)
    if is_subnetwork(optimized):
        return family_masks(matrix, subnetwork_masks(optimized))
    if pretrained is None:
        raise KenpruneError("--pretrained is needed unless --optimized is a subnetwork file")
    opt = TensorSource(optimized)
    pre = TensorSource(pretrained)
    names = matrix_family(matrix, opt.names())
    return KenMasks(matrix, {n: kept_mask(pre.get(n), opt.get(n), n) for n in names})


def _pick_matrix(masks: KenMasks, layer: int | str | None) -> str:
    names = list(masks.masks)
    if isinstance(layer, str):
        if layer not in masks.masks:
            raise KenpruneError(f"{layer!r} is not in the matrix family {masks.pattern!r}")
        return layer
    index = 0 if layer is None else layer
    if not -len(names) <= index < len(names):
        raise KenpruneError(f"layer {index} is out of range: {masks.pattern!r} has {len(names)} matrices")
    return names[index]


def family_figures(masks: KenMasks) -> dict[str, "figures.Figure"]:
    """The views over all layers: kept fraction per layer, and every layer's matrix side by side."""
    names, labels = list(masks.masks), masks.labels()
    family = figures.short_type(figures.matrix_type(names[0]))
    bars = figures.layer_bars([figures.layer_label(n) for n in names], list(masks.fractions().values()),
                              ylabel="kept fraction", title=f"KEN: kept fraction of {family} per layer")
    bars.axes[0].set_xlabel("layer")
    return {
        "kept_fraction": bars,
        "layers": figures.layers_grid({labels[n]: masks.masks[n] for n in names}, title=f"{family} across layers"),
    }


def matrix_figures(masks: KenMasks, layer: int | str | None = None) -> dict[str, "figures.Figure"]:
    """The views of one matrix (`layer`: index into the family or tensor name): kept entries, kept neighbours."""
    name = _pick_matrix(masks, layer)
    return {"matrix": figures.mask_heatmap(masks.masks[name], title=f"{name}: kept entries"),
            "neighbours": figures.neighbour_heatmap(masks.masks[name], title=f"{name}: kept 4-neighbours")}


def kenviz_figures(masks: KenMasks, layer: int | str | None = None) -> dict[str, "figures.Figure"]:
    """All four KEN_viz views: kept_fraction, matrix, neighbours (of `layer`, default the first), layers."""
    return {**family_figures(masks), **matrix_figures(masks, layer)}


def ken_viz(pretrained: str | Path | None, optimized: str | Path, matrix: str,
            layer: int | str | None = None) -> dict[str, "figures.Figure"]:
    """Notebook entry point: `figs = ken_viz("minilm-l6", "ken-out/subnetwork.safetensors", "query"); figs["matrix"]`.

    `optimized` is a subnetwork file (then `pretrained` may be None) or an optimized model folder.
    """
    return kenviz_figures(load_masks(pretrained, optimized, matrix), layer)
