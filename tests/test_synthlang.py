"""The synthetic language: deterministic text whose stated entropy rate is the true one."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from grader.synthlang import EOS, SyntheticLanguage


@pytest.fixture(scope="module")
def lang() -> SyntheticLanguage:
    return SyntheticLanguage(seed=0)


def test_same_seed_gives_byte_identical_text_in_separate_processes():
    code = "import hashlib; from grader.synthlang import SyntheticLanguage as S; print(hashlib.sha256(S(seed=5).text(200_000, seed=9).encode()).hexdigest())"
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout
        for h in (1, 2)
    }
    assert len(digests) == 1
    here = hashlib.sha256(SyntheticLanguage(seed=5).text(200_000, seed=9).encode()).hexdigest()
    assert digests == {here + "\n"}


def test_different_seeds_give_different_text(lang):
    assert lang.text(5000, seed=1) != lang.text(5000, seed=2)
    assert SyntheticLanguage(seed=1).tokens != lang.tokens


def test_text_looks_like_language(lang):
    text = lang.text(100_000, seed=3)
    assert len(text.encode()) >= 100_000
    assert any(ch in text for ch in "éüÉÜ") and "🙂" in text, "multi-byte characters appear"
    assert EOS in text and "." in text and "," in text
    sentences = [s.strip() for s in text.replace("?", ".").replace("!", ".").split(".") if s.strip()]
    assert sum(s[0].isupper() for s in sentences[1:]) == len(sentences) - 1, "sentences start with a capital"


def test_rendering_is_invertible(lang):
    ids = lang.sample(50_000, seed=4)
    assert lang.parse(lang.render(ids)) == ids.tolist()


def test_stated_entropy_matches_a_plug_in_estimate_from_a_large_sample(lang):
    """Estimate H(X_t | X_t-1) from transition counts alone, without the stated matrix."""
    ids = lang.sample(2_000_000, seed=11)
    n = len(lang.tokens)
    counts = np.bincount(ids[:-1] * n + ids[1:], minlength=n * n).reshape(n, n).astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h_rows = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    estimate = float((rows[:, 0] / rows.sum()) @ h_rows)
    assert estimate == pytest.approx(lang.entropy_per_token, rel=0.01)


def test_stated_entropy_is_the_mean_surprisal_of_samples(lang):
    ids = lang.sample(1_000_000, seed=12)
    surprisal = -np.log(lang.transition[ids[:-1], ids[1:]])
    # the chain mixes fast; 8 standard errors of an i.i.d. estimate is a generous bound
    bound = 8 * surprisal.std() / np.sqrt(len(surprisal))
    assert abs(surprisal.mean() - lang.entropy_per_token) < bound


def test_bytes_per_token_and_entropy_per_byte(lang):
    ids = lang.sample(500_000, seed=13)
    text = lang.render(ids)
    assert len(text.encode()) / len(ids) == pytest.approx(lang.bytes_per_token, rel=0.005)
    assert lang.entropy_per_byte == pytest.approx(lang.entropy_per_token / lang.bytes_per_token)


def test_documents_are_whole(lang):
    docs = lang.documents(20, seed=5)
    assert len(docs) == 20
    assert all(EOS not in d and d[0].isupper() and d[-1] in ".?!" for d in docs)
