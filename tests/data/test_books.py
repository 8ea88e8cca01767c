"""The book corpora (austen, austen-novels, mobydick) from Debian's R data packages.

Decision for CI: the real-text tests fetch the packages (`apt-get download` needs no root and works on
any Debian or Ubuntu machine with the archive reachable) and are skipped, with the one-line reason,
where the fetch is impossible; the reader, the text shaping and the split logic are also tested on a
package written in the documented format (R lazy-load database), so they are covered everywhere."""
from __future__ import annotations

import gzip
import zlib

import pytest

from kenprune.data import books, rdata
from kenprune.data.corpora import CORPORA, SPLITS, load_documents, split_documents
from kenprune.errors import KenpruneError

BOOK_CORPORA = ("austen", "austen-novels", "mobydick")


def _real(name: str):
    try:
        return CORPORA.get(name).load()
    except KenpruneError as exc:
        pytest.skip(str(exc))


def _check_split(name: str, docs) -> dict:
    spec = CORPORA.get(name)
    first = split_documents(docs, spec.fractions, spec.labelled)
    again = split_documents(list(reversed(docs)), spec.fractions, spec.labelled)
    titles = {s: [d.title for d in first[s]] for s in SPLITS}
    assert titles == {s: [d.title for d in again[s]] for s in SPLITS}  # deterministic, order-free
    texts = {s: {d.text for d in first[s]} for s in SPLITS}
    for a, b in (("calib", "valid"), ("calib", "test"), ("valid", "test")):
        assert not set(titles[a]) & set(titles[b]) and not texts[a] & texts[b]  # disjoint, also by text
    assert sum(len(t) for t in titles.values()) == len(docs)
    return first


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Both packages as the cache holds them, written in the documented format with a little text."""
    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path))
    books.austen_novels.cache_clear()
    lines = {}
    for j, name in enumerate(books.NOVELS):
        novel = [name.upper(), ""]
        for c in range(1, 7):
            novel += [f"CHAPTER {c}", ""]
            for p in range(8):
                novel += [f"{name} chapter {c} paragraph {p} " + " ".join(f"w{j}{c}{p}{i}" for i in range(20)),
                          "second line of the paragraph.", ""]
        lines[name] = novel
    rdata.write_lazyload(tmp_path / "debian" / books.AUSTEN_PACKAGE / books.DATA_DIR[books.AUSTEN_PACKAGE], lines)
    moby = "\r\n".join(["header", "*** START OF THIS PROJECT GUTENBERG EBOOK MOBY DICK ***", ""]
                       + sum(([f"CHAPTER {c}. Title {c}.", "", f"Call me {c}. " * 30, ""] for c in range(1, 21)), [])
                       + ["*** END OF THIS PROJECT GUTENBERG EBOOK ***", "licence"])
    rdata.write_lazyload(tmp_path / "debian" / books.MOBYDICK_PACKAGE / books.DATA_DIR[books.MOBYDICK_PACKAGE],
                         {"mobydick": [moby]})
    yield tmp_path
    books.austen_novels.cache_clear()


def test_r_lazyload_reader_round_trips_strings(tmp_path):
    rdata.write_lazyload(tmp_path, {"emma": ["EMMA", "", None, "é and ü"], "empty": []})
    objects = rdata.read_lazyload(tmp_path)
    assert list(objects) == ["emma", "empty"]
    assert objects["emma"].values == ["EMMA", "", None, "é and ü"] and objects["empty"].values == []
    # the documented layout: the index is gzip, each entry a 4-byte length then zlib
    assert gzip.decompress((tmp_path / "Rdata.rdx").read_bytes())[:2] == b"X\n"
    db = (tmp_path / "Rdata.rdb").read_bytes()
    assert zlib.decompress(db[4:])[:2] == b"X\n"


def test_r_reader_refuses_other_bytes(tmp_path):
    with pytest.raises(rdata.RDataError, match="not an XDR"):
        rdata.unserialize(b"RDX2\n")
    with pytest.raises(rdata.RDataError, match="R type 3"):  # a closure
        rdata.unserialize(b"X\n" + (2).to_bytes(4, "big") * 3 + (3).to_bytes(4, "big"))


@pytest.mark.parametrize("name", BOOK_CORPORA)
def test_splits_in_the_documented_format(fake_packages, name):
    docs = CORPORA.get(name).load()
    first = _check_split(name, docs)
    assert all(first[s] for s in SPLITS)
    if name == "austen-novels":
        assert {d.label for d in docs} == set(books.NOVELS.values())
        assert all(len(d.text.split()) >= books.PASSAGE_WORDS for d in docs)
        assert not any("CHAPTER" in d.text for d in docs)  # headings would tell the novel by their style
    if name == "mobydick":
        assert len(docs) == 20 and not any("licence" in d.text or "header" in d.text for d in docs)


def test_text_shaping():
    assert books.paragraphs(["a b", "c", "", "", "d", ""]) == ["a b c", "d"]
    assert books.chapters(["TITLE", "CHAPTER I", "x", "Chapter 2", "y", "CHAPTER 3. Loomings.", "z"]) == \
        [["TITLE"], ["CHAPTER I", "x"], ["Chapter 2", "y"], ["CHAPTER 3. Loomings.", "z"]]
    words = " ".join(f"w{i}" for i in range(10))
    assert books.passages(["CHAPTER I", words, words, "tail"], words=8) == \
        [" ".join(f"w{i}" for i in range(8)), "w8 w9 " + words + " tail"]  # a short remainder joins the last


def test_unavailable_package_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(books.shutil, "which", lambda tool: None)
    with pytest.raises(KenpruneError, match=r"^r-cran-tokenizers is unavailable: apt-get and dpkg-deb not found"):
        books.package_data(books.MOBYDICK_PACKAGE)


@pytest.mark.parametrize("name", BOOK_CORPORA)
def test_real_book_splits_are_deterministic_and_disjoint(name):
    docs = _real(name)
    first = _check_split(name, docs)
    words = {s: sum(len(d.text.split()) for d in first[s]) for s in SPLITS}
    if name == "austen":
        assert sum(words.values()) == 717_537  # the six novels, every word
        assert words["test"] > 50_000  # >= 50k held-out words for the decoder testbed
    if name == "austen-novels":
        assert len(first["test"]) > 1000 and len({d.label for d in first["test"]}) == 6
    if name == "mobydick":
        assert 200_000 < sum(words.values()) < 215_135  # the novel without Gutenberg's header and licence
        assert load_documents("mobydick:test")[0].text.startswith("CHAPTER")
