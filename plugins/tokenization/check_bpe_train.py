"""Checks for tokenization.bpe_train: exact merges and vocabulary against the reference on the
synthetic corpus, hand-made corpora where the tie-break and pair counting decide, properties
(special tokens never merged, merges inside pre-tokens and most frequent at their step, vocab
consistent with merges, stopping rules) and parity with Hugging Face tokenizers' BpeTrainer on
the merges made before the first tied count.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from typing import Any

import pytest
import regex

from grader import release
from grader.compare import Mistakes, check, fail
from grader.synthlang import SyntheticLanguage

EOT = "<|endoftext|>"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


# --- corpora --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _language() -> SyntheticLanguage:
    return SyntheticLanguage(seed=11)  # one language (built once); each check samples its own text


def _documents(rng: Any, n_chars: int) -> list[str]:
    """Whole documents of the synthetic language, about `n_chars` characters in all."""
    docs = _language().documents(n_chars // 600 + 4, seed=int(rng.np.integers(1 << 30)))
    out, total = [], 0
    for d in docs:
        if total >= n_chars:
            break
        if len(d) <= n_chars // 3:  # documents vary a lot in length: keep the total near n_chars
            out.append(d)
            total += len(d)
    return out


def _describe(text: str, vocab_size: int, special_tokens: list[str]) -> str:
    shown = repr(text) if len(text) <= 40 else f"<{len(text.encode())} bytes of synthetic text>"
    return f"train_bpe({shown}, vocab_size={vocab_size}, special_tokens={special_tokens!r})"


# --- judge-side helpers (independent of the reference) -------------------------------------


def _pretoken_words(text: str, special_tokens: list[str]) -> Counter[tuple[bytes, ...]]:
    """Distinct pre-tokens as tuples of single bytes, with counts (specials cut out first)."""
    pieces = [text]
    if special_tokens:
        ordered = sorted(special_tokens, key=len, reverse=True)
        pieces = regex.split("|".join(regex.escape(s) for s in ordered), text)
    counts: Counter[str] = Counter()
    for piece in pieces:
        counts.update(regex.findall(GPT2_PATTERN, piece))
    return Counter({tuple(bytes([b]) for b in p.encode()): n for p, n in counts.items()})


def _pair_counts(words: Counter[tuple[bytes, ...]]) -> Counter[tuple[bytes, bytes]]:
    pairs: Counter[tuple[bytes, bytes]] = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += n
    return pairs


def _apply(
    words: Counter[tuple[bytes, ...]], pair: tuple[bytes, bytes]
) -> Counter[tuple[bytes, ...]]:
    out: Counter[tuple[bytes, ...]] = Counter()
    for word, n in words.items():
        merged, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                merged.append(word[i] + word[i + 1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        out[tuple(merged)] += n
    return out


def _initial_vocab(special_tokens: list[str]) -> dict[int, bytes]:
    vocab = {i: s.encode() for i, s in enumerate(special_tokens)}
    vocab.update({len(special_tokens) + b: bytes([b]) for b in range(256)})
    return vocab


def _first_ids(vocab: dict[Any, Any], n: int) -> dict[int, Any]:
    return {i: vocab.get(i) for i in range(n)}


def _unpack(got: Any, call: str) -> tuple[dict[Any, Any], list[Any]]:
    check(
        isinstance(got, (tuple, list)) and len(got) == 2,
        f"{call} must return a tuple (vocab, merges), got {type(got).__name__}"
        + (f" of {len(got)} items" if isinstance(got, (tuple, list)) else ""),
    )
    vocab, merges = got
    check(
        isinstance(vocab, dict),
        f"{call}: vocab must be a dict {{id: bytes}}, got {type(vocab).__name__}",
    )
    check(
        isinstance(merges, (list, tuple)),
        f"{call}: merges must be a list, got {type(merges).__name__}",
    )
    for i, m in enumerate(merges):
        check(
            isinstance(m, (tuple, list)) and len(m) == 2 and all(isinstance(x, bytes) for x in m),
            f"{call}: merges[{i}] must be a tuple (bytes, bytes), got {m!r}",
        )
    return vocab, [tuple(m) for m in merges]


class _Training:
    """The solution's train_bpe(text, vocab_size, special_tokens), unpacked into `vocab` and
    `merges`; each comparison on it reruns the same call on the known mistakes when it fails."""

    def __init__(self, expect: Any, text: str, vocab_size: int, special_tokens: list[str]):
        self.expect, self.special_tokens = expect, special_tokens
        self.call = _describe(text, vocab_size, special_tokens)
        self.run = lambda m: m.train_bpe(text, vocab_size, special_tokens)
        self.vocab, self.merges = _unpack(self.run(expect.solution), self.call)

    def mistakes(self, part: int) -> Mistakes:
        """What each known mistake returns for the same call: its vocab (0) or merges (1)."""
        run = self.run  # not `self`, which holds the solution's output: the rerun is known by what it closes over
        return self.expect.mistakes(lambda m: run(m)[part])

    def merges_equal(
        self, expected: list[tuple[bytes, bytes]], call: str | None = None, truth: str = "expected"
    ) -> None:
        """The merges, naming the first that differs."""
        got = self.merges
        if got == expected:
            return
        i = next(
            (j for j, (g, e) in enumerate(zip(got, expected)) if g != e), min(len(got), len(expected))
        )
        if i < min(len(got), len(expected)):
            detail = f"merge {i} is {got[i]!r}, {truth} {expected[i]!r}"
        else:
            detail = f"got {len(got)} merges, {truth} {len(expected)}"
        fail(f"{call or self.call}: merges differ (the first {i} agree): {detail}", got, self.mistakes(1))

    def vocab_equal(self, expected: dict[int, bytes]) -> None:
        run = self.run
        self.expect.compare(self.vocab, expected, lambda m: run(m)[0], name=f"{self.call}: vocab")

    def matches(self, expected: tuple[dict[int, bytes], list[tuple[bytes, bytes]]]) -> None:
        """Initial vocabulary, then merges, then the whole vocabulary, each diagnosed by mistake."""
        k, run = len(self.special_tokens), self.run
        self.expect.compare(
            _first_ids(self.vocab, k + 256),
            _initial_vocab(self.special_tokens),
            lambda m: _first_ids(run(m)[0], k + 256),
            name=f"{self.call}: the initial vocabulary (specials at ids 0..{k - 1}, byte b at id {k} + b)"
            if k
            else f"{self.call}: the initial vocabulary (byte b at id b)",
        )
        self.merges_equal(expected[1])
        self.vocab_equal(expected[0])


# --- checks -----------------------------------------------------------------------------------


@pytest.mark.points(4)
def test_matches_reference_on_synthetic_corpus(expect, reference, rng, figures):
    docs = _documents(rng, 32_000)
    text = EOT.join(docs)
    specials = [EOT]
    vocab_size = 1 + 256 + int(rng.np.integers(220, 260))

    t0 = time.perf_counter()
    expected = reference.train_bpe(text, vocab_size, specials)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = _Training(expect, text, vocab_size, specials)
    t_student = time.perf_counter() - t0
    # reported, not graded; in isolated mode t_student includes one round trip (milliseconds)
    figures["student_seconds"] = round(t_student, 4)
    if not release.is_replayed(reference):  # a students' edition replays the reference: no time to compare
        figures["reference_seconds"] = round(t_ref, 4)
        figures["time_vs_reference"] = round(t_student / max(t_ref, 1e-9), 3)

    trained.matches(expected)


@pytest.mark.points(2)
def test_tie_break_greatest_pair(expect):
    cases = {
        # (a,b), ( ,b) and (b,a) all occur twice: the greatest pair (b"b", b"a") goes first
        "ab ab ba ba": [(b"b", b"a"), (b"a", b"b"), (b" ", b"ba"), (b" ", b"ab")],
        # after (a,a): (aa,a), ( ,b), (b,b) occur once each; by bytes (b"b", b"b") is greatest,
        # although the merged token b"aa" has the larger id
        "aaa bb": [(b"a", b"a"), (b"b", b"b"), (b"aa", b"a"), (b" ", b"bb")],
    }
    for text, expected in cases.items():
        _Training(expect, text, 1000, []).merges_equal(expected)


def test_counts_every_position_and_merges_left_to_right(expect):
    cases = {
        # "aaaa" holds THREE (a,a) positions: (a,a) x3 beats ( ,b) x2 and (b,b) x2;
        # then "aaaa" is [aa, aa] and (b,b) wins the tie against ( ,b)
        "aaaa bb bb": [(b"a", b"a"), (b"b", b"b"), (b" ", b"bb"), (b"aa", b"aa")],
        # merging (a,a) in "aaa" scans left to right: [aa, a], never [a, aa]
        "aaa": [(b"a", b"a"), (b"aa", b"a")],
    }
    for text, expected in cases.items():
        _Training(expect, text, 1000, []).merges_equal(expected)


@pytest.mark.points(2)
def test_special_tokens_never_merged(expect, reference, rng):
    specials = [EOT, "<|sep|>"]
    docs = _documents(rng, 12_000)
    # many short pieces between specials, so that a special token left in the text is frequent
    pieces = [s.strip() for d in docs for s in regex.split(r"(?<=[.?!]) ", d) if s.strip()]
    text = "".join(p + specials[i % 2] for i, p in enumerate(pieces))
    vocab_size = 2 + 256 + 120
    trained = _Training(expect, text, vocab_size, specials)
    expect.compare(
        [trained.vocab.get(0), trained.vocab.get(1)],
        [s.encode() for s in specials],
        lambda m: list(_first_ids(trained.run(m)[0], 2).values()),
        name=f"{trained.call}: the special tokens' ids 0 and 1",
    )
    # the synthetic text never contains '<', '|' or '>': those bytes can only come from a special
    for i, (a, b) in enumerate(trained.merges):
        if any(c in a + b for c in b"<|>"):
            fail(
                f"{trained.call}: merge {i} is {(a, b)!r}: pieces of the special tokens were merged."
                " Split the text on the special tokens first; they never take part in merges",
                trained.merges,
                trained.mistakes(1),
            )
    trained.matches(reference.train_bpe(text, vocab_size, specials))


@pytest.mark.points(2)
def test_merges_are_most_frequent_pairs_inside_pretokens(expect, rng):
    docs = _documents(rng, 8_000)
    text = "\n".join(docs)  # no special tokens: the 256 bytes take ids 0..255
    vocab_size = 256 + 80
    trained = _Training(expect, text, vocab_size, [])
    call, vocab, merges = trained.call, trained.vocab, trained.merges
    words = _pretoken_words(text, [])
    for i, pair in enumerate(merges):
        pairs = _pair_counts(words)
        if pair not in pairs:
            fail(
                f"{call}: merge {i} {pair!r} is not two adjacent tokens inside any pre-token"
                " at that point; merges never cross pre-token boundaries",
                merges,
                trained.mistakes(1),
            )
        top = max(pairs, key=lambda p: (pairs[p], p))
        if pairs[pair] != pairs[top]:
            fail(
                f"{call}: merge {i} {pair!r} occurs {pairs[pair]} times at that point, but"
                f" {top!r} occurs {pairs[top]} times (counted at every adjacent position,"
                " weighted by the pre-token's count)",
                merges,
                trained.mistakes(1),
            )
        words = _apply(words, pair)
    check(
        len(merges) == vocab_size - 256,
        f"{call}: expected {vocab_size - 256} merges (vocab_size - 256), got {len(merges)}",
    )
    check(
        set(vocab) == set(range(vocab_size)),
        f"{call}: vocab must hold exactly the ids 0..{vocab_size - 1}; it has {len(vocab)} ids"
        f" from {min(vocab, default=None)} to {max(vocab, default=None)}",
    )
    for i, (a, b) in enumerate(merges):
        check(
            vocab[256 + i] == a + b,
            f"{call}: merge {i} {(a, b)!r} must create id {256 + i} with bytes {a + b!r};"
            f" vocab[{256 + i}] is {vocab[256 + i]!r}",
        )


def test_no_room_for_merges(expect):
    text = "ab ab ab ba"
    for specials in ([], [EOT], [EOT, "<pad>"]):
        trained = _Training(expect, text, len(specials) + 256, specials)
        expect.compare(
            trained.merges,
            [],
            lambda m, run=trained.run: run(m)[1],
            name=f"{trained.call}: merges (vocab_size = len(special_tokens) + 256)",
        )
        trained.vocab_equal(_initial_vocab(specials))


def test_stops_when_no_pairs_remain(expect):
    cases = {
        # pieces "ab" and " ab": (a,b) x2, then ( ,ab) x1 is merged too; then nothing is left
        ("ab" + EOT + " ab", 1000, (EOT,)): [(b"a", b"b"), (b" ", b"ab")],
        ("", 300, (EOT,)): [],
        ("é", 1000, ()): [(b"\xc3", b"\xa9")],
    }
    for (text, vocab_size, specials), expected_merges in cases.items():
        trained = _Training(expect, text, vocab_size, list(specials))
        trained.merges_equal(expected_merges)
        expected_vocab = _initial_vocab(list(specials))
        for a, b in expected_merges:
            expected_vocab[len(expected_vocab)] = a + b
        trained.vocab_equal(expected_vocab)


# --- parity with Hugging Face tokenizers ----------------------------------------------------


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable character map, inverted: how ByteLevel spells each byte."""
    bs = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _hf_merges(docs: list[str], n_merges: int) -> list[tuple[bytes, bytes]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # use_regex=True: the GPT-2 pattern; no prefix space, as in train_bpe
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + n_merges, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(docs, trainer)  # one document at a time: nothing merges across them
    decode = _byte_decoder()
    out = []
    for m in json.loads(tok.to_str())["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ")
        out.append((bytes(decode[c] for c in a), bytes(decode[c] for c in b)))
    return out


def _untied_prefix(docs: list[str], hf: list[tuple[bytes, bytes]]) -> int:
    """How many of HF's merges come before the first step whose top count is tied."""
    words = _pretoken_words(EOT.join(docs), [EOT])
    for n, pair in enumerate(hf):
        pairs = _pair_counts(words)
        counts = sorted(pairs.values(), reverse=True)
        if pairs.get(pair) != counts[0] or (len(counts) > 1 and counts[1] == counts[0]):
            return n
        words = _apply(words, pair)
    return len(hf)


def test_matches_hf_tokenizers_before_first_tie(expect, rng):
    # HF breaks ties its own way (by token id), so only its merges before the first tied top
    # count are ground truth; of three samples keep the one with the longest such prefix
    candidates = []
    for i in range(3):
        docs = _documents(rng.child("sample", i), 20_000)
        hf = _hf_merges(docs, 60)
        candidates.append((_untied_prefix(docs, hf), i, docs, hf))
    n, _, docs, hf = max(candidates)
    trained = _Training(expect, EOT.join(docs), 1 + 256 + n, [EOT])
    trained.merges_equal(
        hf[:n],
        f"{trained.call} vs Hugging Face tokenizers' BpeTrainer ({n} merges, none with a tied count)",
        truth="BpeTrainer made",
    )


# --- hidden --------------------------------------------------------------------------------

HIDDEN_SPECIALS = ["<s>", "⟨sep⟩", "</s>"]  # one of them not ASCII
_MULTIBYTE = ["é", "ï", "ß", "ж", "λ", "中", "文", "🙂", "٣", "a", "b", " ", "  ", "\n", "'s", "7"]


@pytest.mark.hidden
def test_hidden_multibyte_text_and_fresh_special_tokens(expect, reference, rng):
    """What the public checks do not show: three fresh special tokens, one not ASCII, at both
    ends of the text, back to back and between pieces; text where most characters take two
    to four UTF-8 bytes, so merges form inside characters; a vocab_size with room for exactly
    one merge, one for a random count, and one beyond what a short text can give."""
    r = rng.np

    def multibyte(n: int) -> str:
        return "".join(_MULTIBYTE[int(i)] for i in r.integers(0, len(_MULTIBYTE), n))

    pieces = [multibyte(int(r.integers(1, 30))) for _ in range(40)] + _documents(rng, 2000)
    r.shuffle(pieces)
    between = [str(r.choice(HIDDEN_SPECIALS + ["", ""])) for _ in pieces]
    s0, s1, s2 = HIDDEN_SPECIALS
    text = s0 + "".join(p + s for p, s in zip(pieces, between)) + s1 + s2
    short = s1 + multibyte(40) + s0 + s0 + multibyte(20)
    room = len(HIDDEN_SPECIALS) + 256
    for t, vocab_size in ((text, room + 1), (text, room + int(r.integers(30, 90))), (short, room + 1000)):
        expected = reference.train_bpe(t, vocab_size, HIDDEN_SPECIALS)
        _Training(expect, t, vocab_size, HIDDEN_SPECIALS).matches(expected)
