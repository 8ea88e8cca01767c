"""Real text that ships inside installed packages, split deterministically into calib/valid/test.

Every corpus has the same three splits: `calib` (calibration windows and fine-tuning
data), `valid` (model selection, DSA search fitness) and `test` (reported numbers), plus
`all`. Splits are made by document, never by window, so they never overlap.
"""
from __future__ import annotations

import bz2
import copyreg
import functools
import hashlib
import importlib.util
import io
import pickle
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import KenpruneError
from ..registry import Registry

SPLITS = ("calib", "valid", "test")
DOC_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Document:
    title: str
    text: str
    label: str | None = None


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    description: str
    labelled: bool
    load: Callable[[], list[Document]]
    fractions: tuple[float, float, float]  # calib, valid, test


CORPORA: Registry[CorpusSpec] = Registry("corpus")


def _gensim_file(name: str) -> Path:
    """A data file bundled with gensim, found without importing gensim (its import costs ~45 MiB)."""
    import importlib.util

    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise KenpruneError("gensim is not installed; run `pip install gensim==4.4.0`")
    path = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data" / name
    if not path.exists():
        raise KenpruneError(f"gensim's bundled file {name} is missing from {path.parent}")
    return path


_WIKI_BOLD_ITALIC = re.compile(r"'{2,}")
_EMPTY_BULLET = re.compile(r"^[*#:;\s]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.MULTILINE)


def clean_wiki_markup(text: str) -> str:
    """Plain text from gensim's `filter_wiki` output: drop emphasis quotes and empty bullets."""
    text = _WIKI_BOLD_ITALIC.sub("", text)
    text = _HEADING.sub(lambda m: f"{m.group(1)} {m.group(2)} {m.group(1)}", text)
    text = _EMPTY_BULLET.sub("", text)
    text = _BLANK_RUNS.sub("\n\n", text)
    return text.strip()


WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WIKI_PARSE_VERSION = 1  # bump when the parsing or cleaning below changes: it names the cached parse


def _parse_wiki(path: Path) -> list[Document]:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    docs = []
    with bz2.BZ2File(path) as fh:
        for title, text, _pageid in extract_pages(fh):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            body = clean_wiki_markup(filter_wiki(text))
            if body:
                docs.append(Document(title=title, text=f"= {title} =\n\n{body}"))
    return docs


@functools.lru_cache(maxsize=1)
def _wiki_documents() -> tuple[Document, ...]:
    """The Wikipedia sample's articles as plain text. The parse is cached as JSON under the
    kenprune cache (named by the dump's hash, gensim's version and WIKI_PARSE_VERSION), so only
    the first use on a machine imports gensim and runs its wiki parser."""
    import json
    from importlib.metadata import version

    from .. import provenance
    from ..fileio import atomic_file

    path = _gensim_file(WIKI_FILE)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = provenance.cache_root() / "corpora" / f"wiki-{digest}-gensim-{version('gensim')}-v{WIKI_PARSE_VERSION}.json"
    if cached.exists():
        try:
            return tuple(Document(title, text) for title, text in json.loads(cached.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            pass  # a damaged cache file is parsed again and replaced
    docs = _parse_wiki(path)
    with atomic_file(cached) as tmp:
        tmp.write_text(json.dumps([[d.title, d.text] for d in docs], ensure_ascii=False), encoding="utf-8")
    return tuple(docs)


def _lee_documents() -> list[Document]:
    path = _gensim_file("lee_background.cor")
    lines = [ln.strip() for ln in path.read_text(encoding="latin-1").splitlines()]
    return [Document(title=f"lee-{i:03d}", text=ln) for i, ln in enumerate(lines) if ln]


def _pang_lee_documents() -> list[Document]:
    path = _gensim_file("pang_lee_polarity.cor")
    docs = []
    for i, line in enumerate(path.read_text(encoding="latin-1").splitlines()):
        line = line.strip()
        if not line:
            continue
        label, _, text = line.partition(" ")
        if not label.startswith("__label__"):
            raise KenpruneError(f"{path}: line {i + 1} has no __label__ prefix")
        docs.append(Document(title=f"pang-lee-{i:03d}", text=text.strip(), label=label[len("__label__"):]))
    return docs


class _NewsgroupsUnpickler(pickle.Unpickler):
    """Unpickles gensim's Python-2 sklearn Bunch and refuses every other global."""

    def find_class(self, module: str, name: str):
        import numpy as np
        from numpy._core.multiarray import _reconstruct

        allowed = {
            ("copy_reg", "_reconstructor"): copyreg._reconstructor,
            ("__builtin__", "dict"): dict,
            ("__builtin__", "object"): object,
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if module.startswith("sklearn.") and name == "Bunch":
            return dict
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def load_restricted_pickle(data: bytes):
    return _NewsgroupsUnpickler(io.BytesIO(data), encoding="latin1").load()


_HEADER_LINE = re.compile(r"^.*\b(Newsgroups|Xref|Path|Followup-To):.*$\n?", re.MULTILINE)


def _strip_news_headers(post: str) -> str:
    """Drop the header block and stray header lines (they name the newsgroup, i.e. the label)."""
    _headers, sep, body = post.partition("\n\n")
    return _HEADER_LINE.sub("", body if sep else post).strip()


def _newsgroups_documents() -> list[Document]:
    path = _gensim_file("mini_newsgroup")
    bunch = load_restricted_pickle(zlib.decompress(path.read_bytes()))
    names = list(bunch["target_names"])
    docs = []
    for i, (post, target) in enumerate(zip(bunch["data"], bunch["target"])):
        body = _strip_news_headers(post)
        if body:
            docs.append(Document(title=f"newsgroups-{i:03d}", text=body, label=names[int(target)]))
    return docs


CORPORA.add("wiki", CorpusSpec("wiki", "Wikipedia sample shipped with gensim: 106 articles, ~480k words",
                               False, lambda: list(_wiki_documents()), (0.70, 0.15, 0.15)),
            "Wikipedia articles (gensim test data); WikiText-2 sized")
CORPORA.add("lee", CorpusSpec("lee", "Lee news corpus shipped with gensim: 300 articles, ~60k words",
                              False, _lee_documents, (0.70, 0.15, 0.15)), "news prose (gensim)")
CORPORA.add("pang-lee", CorpusSpec("pang-lee", "Pang & Lee movie-review polarity: 200 labelled sentences",
                                   True, _pang_lee_documents, (0.60, 0.20, 0.20)), "sentiment, 2 labels")
CORPORA.add("newsgroups-mini", CorpusSpec("newsgroups-mini",
                                          "20-newsgroups sample: 200 posts, alt.atheism vs sci.space",
                                          True, _newsgroups_documents, (0.60, 0.20, 0.20)), "topic, 2 labels")



def _books(loader: str) -> Callable[[], list[Document]]:
    """A corpus loader from books.py (fetched from Debian on first use), imported only when used."""
    def load() -> list[Document]:
        from . import books

        return getattr(books, loader)()
    return load


CORPORA.add("austen", CorpusSpec("austen", "Jane Austen's six novels (Debian r-cran-janeaustenr): 717k words, "
                                 "one document per chapter", False, _books("austen_documents"), (0.70, 0.15, 0.15)),
            "novels (Debian package, fetched once)")
CORPORA.add("austen-novels", CorpusSpec("austen-novels", "which of Austen's six novels a passage of >= 48 words "
                                        "comes from: ~14k labelled passages", True, _books("austen_passage_documents"),
                                        (0.80, 0.10, 0.10)), "authorship, 6 labels (Debian package)")
CORPORA.add("mobydick", CorpusSpec("mobydick", "Moby Dick (Debian r-cran-tokenizers): 215k words, one document "
                                   "per chapter", False, _books("mobydick_documents"), (0.70, 0.15, 0.15)),
            "novel (Debian package, fetched once)")

def _stable_key(doc: Document) -> str:
    return hashlib.sha256(doc.title.encode()).hexdigest()


def split_documents(docs: Sequence[Document], fractions: tuple[float, float, float],
                    labelled: bool) -> dict[str, list[Document]]:
    """Deterministic, disjoint split by document.

    Documents are ordered by a hash of their title (stable under reordering of the source);
    text corpora are cut by characters, labelled ones by count within each label (stratified).
    """
    out: dict[str, list[Document]] = {s: [] for s in SPLITS}
    groups: dict[str | None, list[Document]] = {}
    for doc in docs:
        groups.setdefault(doc.label if labelled else None, []).append(doc)
    for group in groups.values():
        group = sorted(group, key=_stable_key)
        sizes = [1] * len(group) if labelled else [len(d.text) for d in group]
        total = sum(sizes)
        # test first, then valid, then calib takes the rest
        bounds = {"test": fractions[2] * total, "valid": (fractions[2] + fractions[1]) * total}
        acc = 0.0
        for doc, size in zip(group, sizes):
            if acc < bounds["test"]:
                out["test"].append(doc)
            elif acc < bounds["valid"]:
                out["valid"].append(doc)
            else:
                out["calib"].append(doc)
            acc += size
    for split in SPLITS:
        out[split].sort(key=_stable_key)
    return out


@dataclass(frozen=True)
class DataRef:
    """A parsed `corpus:split` reference such as `wiki:test`, `text:notes.txt` or `hf:wikitext:wikitext-2-raw-v1`."""

    corpus: str
    split: str
    path: str | None = None
    config: str | None = None

    def __str__(self) -> str:
        if self.corpus == "text":
            return f"text:{self.path}"
        if self.corpus == "hf":
            return f"hf:{self.path}" + (f":{self.config}" if self.config else "") + f"@{self.split}"
        return f"{self.corpus}:{self.split}"


def parse_data_ref(ref: str, default_split: str = "test") -> DataRef:
    ref = ref.strip()
    if not ref:
        raise KenpruneError("empty data reference; use CORPUS[:SPLIT], e.g. wiki:test")
    if ref.startswith("text:"):
        path = ref[len("text:"):]
        if not Path(path).expanduser().exists():
            from ..models.loading import missing_path_message

            raise KenpruneError(missing_path_message(path, "text file or folder"))
        return DataRef("text", "all", path=str(Path(path).expanduser()))
    if ref.startswith("hf:"):
        if importlib.util.find_spec("datasets") is None:
            raise KenpruneError("hf: data needs the `datasets` package (pip install datasets) and internet")
        body, _, split = ref[len("hf:"):].partition("@")
        name, _, config = body.partition(":")
        return DataRef("hf", split or default_split, path=name, config=config or None)
    corpus, _, split = ref.partition(":")
    CORPORA.get(corpus)  # raises with the list of names
    split = split or default_split
    if split not in (*SPLITS, "all"):
        raise KenpruneError(f"unknown split {split!r} for {corpus}; choose one of: {', '.join(SPLITS)}, all")
    return DataRef(corpus, split)


def _text_documents(path: str) -> list[Document]:
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    docs = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = file.read_text(encoding="latin-1")
        if text.strip():
            docs.append(Document(title=str(file), text=text.strip()))
    if not docs:
        raise KenpruneError(f"no text found in {path}")
    return docs


def _hf_documents(ref: DataRef) -> list[Document]:
    try:
        import datasets  # type: ignore
    except ImportError:
        raise KenpruneError("hf: data needs the `datasets` package (pip install datasets) and internet") from None
    split = {"calib": "train", "valid": "validation"}.get(ref.split, ref.split)
    try:
        ds = datasets.load_dataset(ref.path, ref.config, split=split)
    except Exception as exc:  # network or name errors from the hub
        raise KenpruneError(f"could not load hf:{ref.path} ({type(exc).__name__}: {exc})") from None
    column = "text" if "text" in ds.column_names else ds.column_names[0]
    return [Document(title=f"{ref.path}-{i}", text=row[column]) for i, row in enumerate(ds) if row[column]]


def load_documents(ref: DataRef | str) -> list[Document]:
    """The documents of one split of a corpus, in deterministic order."""
    if isinstance(ref, str):
        ref = parse_data_ref(ref)
    if ref.corpus == "text":
        return _text_documents(ref.path)  # type: ignore[arg-type]
    if ref.corpus == "hf":
        return _hf_documents(ref)
    spec = CORPORA.get(ref.corpus)
    docs = spec.load()
    if ref.split == "all":
        return list(docs)
    return split_documents(docs, spec.fractions, spec.labelled)[ref.split]


def join_text(docs: Sequence[Document]) -> str:
    return DOC_SEPARATOR.join(d.text for d in docs)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenize_stream(tokenizer, text: str) -> torch.Tensor:
    """Token ids of a whole text as one 1-D stream, with no special tokens (windows add BOS themselves)."""
    if not text.strip():
        raise KenpruneError("the text is empty; nothing to tokenize")
    from ..measure import release_free_memory

    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    tokens = torch.tensor(ids, dtype=torch.long)
    del ids
    release_free_memory()  # the tokenizer's transient buffers would otherwise stay resident
    return tokens


def sample_windows(tokens: torch.Tensor, n: int, seqlen: int, seed: int) -> torch.Tensor:
    """n random windows of `seqlen` tokens from a token stream, reproducible by seed: shape [n, seqlen]."""
    if n <= 0 or seqlen <= 0:
        raise KenpruneError(f"need a positive number of windows and length, got n={n}, seqlen={seqlen}")
    total = int(tokens.numel())
    if n * seqlen > total:
        raise KenpruneError(
            f"{n} x {seqlen} = {n * seqlen} calibration tokens exceed the split's {total}; "
            f"lower --nsamples or --seqlen"
        )
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, total - seqlen + 1, (n,), generator=gen)
    return torch.stack([tokens[s:s + seqlen] for s in starts.tolist()])
