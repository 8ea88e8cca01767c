import pickle

import pytest
import torch

from kenprune.data import corpora
from kenprune.data.corpora import (CORPORA, SPLITS, join_text, load_documents, parse_data_ref,
                                     sample_windows, split_documents, tokenize_stream)
from kenprune.errors import KenpruneError


@pytest.mark.parametrize("name", CORPORA.names())
def test_splits_are_deterministic_disjoint_and_cover_the_corpus(name):
    spec = CORPORA.get(name)
    try:
        docs = spec.load()
    except KenpruneError as exc:  # the Debian books where apt-get cannot fetch them (tests/data/test_books.py)
        pytest.skip(str(exc))
    first = split_documents(docs, spec.fractions, spec.labelled)
    again = split_documents(list(reversed(docs)), spec.fractions, spec.labelled)
    titles = {s: [d.title for d in first[s]] for s in SPLITS}
    assert titles == {s: [d.title for d in again[s]] for s in SPLITS}
    sets = [set(titles[s]) for s in SPLITS]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(s) for s in sets) == len({d.title for d in docs}) == len(docs)
    assert all(len(first[s]) > 0 for s in SPLITS)


def test_wiki_is_clean_plain_text_of_106_articles():
    docs = load_documents("wiki:all")
    assert len(docs) == 106
    text = join_text(docs)
    assert "'''" not in text and "[[" not in text
    assert "Anarchism is a political philosophy" in text
    words = len(text.split())
    assert 450_000 < words < 520_000


def test_labelled_corpora_are_stratified():
    for name in ("pang-lee", "newsgroups-mini"):
        test = load_documents(f"{name}:test")
        labels = {d.label for d in test}
        assert len(labels) == 2
        counts = [sum(d.label == lab for d in test) for lab in labels]
        assert counts[0] == counts[1]


def test_newsgroups_text_has_no_header_that_leaks_the_label():
    for doc in load_documents("newsgroups-mini:all"):
        assert "Newsgroups:" not in doc.text and "Xref:" not in doc.text


def test_restricted_unpickler_refuses_foreign_globals():
    evil = pickle.dumps(print)  # a global outside the allowed list
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        corpora.load_restricted_pickle(evil)


def test_text_corpus_reads_files_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("second file")
    docs = load_documents(f"text:{tmp_path}")
    assert [d.text for d in docs] == ["hello world", "second file"]
    with pytest.raises(KenpruneError, match="no such text file or folder"):
        parse_data_ref(f"text:{tmp_path / 'missing.txt'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("   \n")
    with pytest.raises(KenpruneError, match="no text"):
        load_documents(f"text:{tmp_path / 'empty'}")


def test_bad_data_refs_give_one_line_errors():
    with pytest.raises(KenpruneError, match="unknown corpus 'nope'"):
        parse_data_ref("nope:test")
    with pytest.raises(KenpruneError, match="unknown split 'tset'"):
        parse_data_ref("wiki:tset")
    with pytest.raises(KenpruneError, match="empty"):
        parse_data_ref("  ")


def test_calibration_sampler_is_deterministic_per_seed(smollm2):
    tokens = tokenize_stream(smollm2.tokenizer, join_text(load_documents("lee:calib")))
    a = sample_windows(tokens, 8, 64, seed=0)
    b = sample_windows(tokens, 8, 64, seed=0)
    c = sample_windows(tokens, 8, 64, seed=1)
    assert a.shape == (8, 64) and torch.equal(a, b) and not torch.equal(a, c)
    # every window is a contiguous slice of the stream
    stream = tokens.tolist()
    for row in a.tolist():
        starts = [i for i in range(len(stream) - 63) if stream[i:i + 64] == row]
        assert starts
    with pytest.raises(KenpruneError, match="exceed"):
        sample_windows(tokens, 10_000, 512, seed=0)


def test_wiki_parse_is_cached_and_a_warm_load_never_imports_gensim(tmp_path, monkeypatch):
    import json
    import os
    import subprocess
    import sys

    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path))
    corpora._wiki_documents.cache_clear()
    try:
        cold = corpora._wiki_documents()
        cached = list((tmp_path / "corpora").glob("wiki-*.json"))
        assert len(cached) == 1 and not list((tmp_path / "corpora").glob(".*.tmp"))
        assert cold == tuple(corpora._parse_wiki(corpora._gensim_file(corpora.WIKI_FILE)))
        corpora._wiki_documents.cache_clear()
        assert corpora._wiki_documents() == cold  # read back from the cache file

        code = ("import sys; from kenprune.data.corpora import load_documents; "
                "docs = load_documents('wiki:calib'); print(len(docs), 'gensim' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "KENPRUNE_CACHE": str(tmp_path)}).stdout.split()
        assert out[1] == "False" and int(out[0]) > 0

        cached[0].write_text("{not json", encoding="utf-8")  # a damaged cache is parsed again and replaced
        corpora._wiki_documents.cache_clear()
        assert corpora._wiki_documents() == cold
        assert len(json.loads(cached[0].read_text(encoding="utf-8"))) == len(cold)
    finally:
        corpora._wiki_documents.cache_clear()
