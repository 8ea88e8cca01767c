"""Books from Debian's R data packages, read without R: Jane Austen's six novels and Moby Dick.

`r-cran-janeaustenr` holds each novel as a character vector of printed lines; `r-cran-tokenizers`
holds Moby Dick as one string. The package is fetched once with `apt-get download` (no root needed)
and unpacked with `dpkg-deb -x` into kenprune's cache (`<cache>/debian/<package>/`); `rdata.py`
reads its lazy-load database. Corpora made from them (registered in corpora.py):

- `austen`: the six novels as text, one document per chapter (split by characters: 70/15/15 %);
- `austen-novels`: labelled passages of >= PASSAGE_WORDS words, the label is the novel (which of
  the six novels a passage comes from), chapter headings dropped; split stratified by novel;
- `mobydick`: Moby Dick as text, one document per chapter, the Gutenberg header and licence dropped.
"""
from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import KenpruneError

AUSTEN_PACKAGE, MOBYDICK_PACKAGE = "r-cran-janeaustenr", "r-cran-tokenizers"
DATA_DIR = {AUSTEN_PACKAGE: "usr/lib/R/site-library/janeaustenr/data",
            MOBYDICK_PACKAGE: "usr/lib/R/site-library/tokenizers/data"}
NOVELS = {"sensesensibility": "Sense & Sensibility", "prideprejudice": "Pride & Prejudice",
          "mansfieldpark": "Mansfield Park", "emma": "Emma", "northangerabbey": "Northanger Abbey",
          "persuasion": "Persuasion"}
PASSAGE_WORDS = 48
_CHAPTER = re.compile(r"^\s*chapter\s+([ivxlc]+|\d+)\b[^\n]{0,60}$", re.IGNORECASE)  # "CHAPTER 1. Loomings."
_HEADING = re.compile(r"^\s*(chapter|volume)\s+([ivxlc]+|\d+)\b.*$|^\s*the end\s*$", re.IGNORECASE)


def package_data(package: str) -> Path:
    """The R data folder of a Debian package, fetched and unpacked into the cache the first time."""
    from .. import provenance

    root = provenance.cache_root() / "debian" / package
    data = root / DATA_DIR[package]
    if (data / "Rdata.rdb").exists():
        return data
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise KenpruneError(f"{package} is unavailable: {' and '.join(missing)} not found (a Debian or Ubuntu "
                            f"machine fetches it with `apt-get download {package}`)")
    print(f"fetching Debian package {package} once into {root} (apt-get download + dpkg-deb -x)",
          file=sys.stderr, flush=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{package}-") as tmp:
        got = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True)
        debs = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if got.returncode != 0 or not debs:
            reason = (got.stderr.strip().splitlines() or ["no .deb was written"])[-1]
            raise KenpruneError(f"{package} is unavailable: apt-get download failed ({reason})")
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, capture_output=True)
        if not (unpacked / DATA_DIR[package] / "Rdata.rdb").exists():
            raise KenpruneError(f"{debs[0].name} has no {DATA_DIR[package]}/Rdata.rdb")
        if root.exists():
            shutil.rmtree(root)
        unpacked.rename(root)
    return data


def _strings(package: str) -> dict[str, list[str]]:
    from .rdata import RDataError, read_lazyload

    try:
        objects = read_lazyload(package_data(package))
    except (RDataError, OSError) as exc:
        raise KenpruneError(f"{package}'s R data could not be read: {exc}") from None
    return {name: [s or "" for s in obj.values] for name, obj in objects.items()}


def paragraphs(lines: list[str]) -> list[str]:
    """Printed lines -> paragraphs (consecutive non-blank lines joined by spaces)."""
    out, current = [], []
    for line in lines + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            out.append(" ".join(current))
            current = []
    return out


def chapters(paras: list[str]) -> list[list[str]]:
    """Paragraphs cut at chapter headings ("CHAPTER I", "Chapter 1", "CHAPTER 1. Loomings."); front matter
    is chapter 0."""
    out: list[list[str]] = [[]]
    for para in paras:
        if _CHAPTER.match(para):
            out.append([])
        out[-1].append(para)
    return [c for c in out if c]


def passages(paras: list[str], words: int = PASSAGE_WORDS) -> list[str]:
    """Consecutive paragraphs (headings dropped) grouped into passages of >= `words` words; a long
    paragraph is cut into pieces of `words` words; a short remainder joins the last passage."""
    out, current = [], []
    for para in paras:
        if _HEADING.match(para):
            continue
        tokens = para.split()
        while tokens:
            need = words - len(current)
            current += tokens[:need]
            tokens = tokens[need:]
            if len(current) >= words:
                out.append(" ".join(current))
                current = []
    if current and out:
        out[-1] += " " + " ".join(current)
    elif current:
        out.append(" ".join(current))
    return out


@functools.lru_cache(maxsize=1)
def austen_novels() -> dict[str, list[str]]:
    """The six novels' paragraphs, by novel (name as in janeaustenr: emma, persuasion, ...)."""
    lines = _strings(AUSTEN_PACKAGE)
    return {name: paragraphs(lines[name]) for name in NOVELS if name in lines}


def austen_documents():
    from .corpora import Document

    return [Document(title=f"{name}-ch{i:03d}", text="\n\n".join(chapter))
            for name, paras in austen_novels().items() for i, chapter in enumerate(chapters(paras))]


def austen_passage_documents():
    from .corpora import Document

    return [Document(title=f"{name}-{i:05d}", text=text, label=NOVELS[name])
            for name, paras in austen_novels().items() for i, text in enumerate(passages(paras))]


def mobydick_documents():
    from .corpora import Document

    text = "\n".join(_strings(MOBYDICK_PACKAGE)["mobydick"]).replace("\r\n", "\n").lstrip("\ufeff")
    start, end = text.find("*** START OF"), text.find("*** END OF")
    if start >= 0:
        text = text[text.find("\n", start) + 1:end if end > start else None]
    return [Document(title=f"mobydick-ch{i:03d}", text="\n\n".join(chapter))
            for i, chapter in enumerate(chapters(paragraphs(text.split("\n"))))]
