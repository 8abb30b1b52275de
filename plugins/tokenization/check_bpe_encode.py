"""Checks for tokenization.bpe_encode: ids identical to a Hugging Face `tokenizers` BPE.

The judge trains a byte-level vocabulary and merge list on the synthetic language with HF's
own BpeTrainer (on plain text and on the same text laid out as a file, with indentation and
blank lines, so that whitespace runs get merges too), renumbers the ids at random, and builds
the ground truth in memory from that vocab and those merges: `tokenizers.models.BPE` over
GPT-2's byte-to-unicode strings, the ByteLevel pre-tokenizer (add_prefix_space=False,
use_regex=True) and decoder, the special tokens added with `add_special_tokens`.
One check uses small hand-made merge lists instead, where merging the best pair's leftmost
occurrence and then looking again gives other tokens than merging all its occurrences at once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from grader.compare import check
from grader.rng import Rng
from grader.synthlang import SyntheticLanguage

SPECIALS = ["<|endoftext|>", "<|endoftext|><|endoftext|>", "<pad>"]
VOCAB_SIZE = 700

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]


# --- the ground truth ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (what HF's byte-level BPE stores)."""
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in keep}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def _to_unicode(token: bytes) -> str:
    table = _bytes_to_unicode()
    return "".join(table[b] for b in token)


def _to_bytes(token: str) -> bytes:
    inverse = {c: b for b, c in _bytes_to_unicode().items()}
    return bytes(inverse[c] for c in token)


@functools.lru_cache(maxsize=1)
def _language() -> SyntheticLanguage:
    return SyntheticLanguage(seed=0)


def _layout(text: str, r: np.random.Generator) -> str:
    """The text laid out as a file: one sentence per line, random indentation, blank lines."""
    lines = []
    for doc in text.split("\n"):
        for sentence in (
            doc.replace(". ", ".\n").replace("? ", "?\n").replace("! ", "!\n").split("\n")
        ):
            indent = ["", "", " ", "  ", "    ", "\t", "        "][int(r.integers(7))]
            lines.append(indent + sentence + ("\n\n" if r.random() < 0.3 else "\n"))
    return "".join(lines)


@functools.lru_cache(maxsize=1)
def _trained() -> tuple[Vocab, Merges]:
    """A vocab and merges trained by HF's BpeTrainer on synthetic text (fixed: training is the
    slow part; the ids are renumbered per check from its rng)."""
    text = _language().text(40_000, seed=1)
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text, _layout(text, np.random.default_rng(0))], trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = {i: _to_bytes(s) for s, i in model["vocab"].items()}
    merges = [(_to_bytes(a), _to_bytes(b)) for a, b in model["merges"]]
    return vocab, merges


def _vocab_and_merges(rng: Rng) -> tuple[Vocab, Merges]:
    """The trained vocab with its ids shuffled: byte b does not have id b, specials aren't 0."""
    vocab, merges = _trained()
    perm = rng.child("ids").np.permutation(len(vocab))
    return {int(perm[i]): token for i, token in vocab.items()}, list(merges)


def _hf(vocab: Vocab, merges: Merges, specials: list[str] | None) -> HFTokenizer:
    tok = HFTokenizer(
        models.BPE(
            vocab={_to_unicode(token): i for i, token in vocab.items()},
            merges=[(_to_unicode(a), _to_unicode(b)) for a, b in merges],
        )
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    if specials:
        tok.add_special_tokens(specials)
        for s in specials:  # HF reuses the vocab's id for a special token that is already in it
            assert vocab[tok.token_to_id(s)] == s.encode("utf-8"), s
    return tok


def _hf_ids(tok: HFTokenizer, text: str) -> list[int]:
    return list(tok.encode(text).ids)


# --- inputs --------------------------------------------------------------------------------

# Characters for random strings: scripts, combining marks, symbols, CJK, Hangul, full-width
# forms, emoji. Python's `regex` and HF's pre-tokenizer agree on every one of them (they
# disagree only on characters assigned in the newest Unicode versions).
_RANGES = [
    (0x20, 0x7E),
    (0xA0, 0x24F),
    (0x300, 0x36F),
    (0x391, 0x3C9),
    (0x400, 0x45F),
    (0x5D0, 0x5EA),
    (0x620, 0x669),
    (0x900, 0x97F),
    (0x2000, 0x206F),
    (0x20A0, 0x20BF),
    (0x2200, 0x22FF),
    (0x3000, 0x30FF),
    (0x4E00, 0x4FFF),
    (0xAC00, 0xAD00),
    (0xFF01, 0xFF5E),
    (0x1F300, 0x1F64F),
    (0x1F900, 0x1F9FF),
]
_POOL = [chr(c) for lo, hi in _RANGES for c in range(lo, hi + 1)]
_WHITESPACE = [" ", " ", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u2003", "\u3000"]


def _random_text(r: np.random.Generator) -> str:
    """A random string of words, whitespace runs, contractions, digits, odd characters, emoji."""
    words = _language().tokens
    parts = []
    for _ in range(int(r.integers(1, 16))):
        kind = int(r.integers(6))
        if kind == 0:
            parts.extend(_POOL[int(i)] for i in r.integers(0, len(_POOL), int(r.integers(1, 6))))
        elif kind == 1:
            parts.extend(
                _WHITESPACE[int(i)] for i in r.integers(0, len(_WHITESPACE), int(r.integers(1, 5)))
            )
        elif kind == 2:
            parts.append(" " * int(r.integers(0, 2)) + words[int(r.integers(len(words)))])
        elif kind == 3:
            parts.append(
                ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "'S", "''"][int(r.integers(10))]
            )
        elif kind == 4:
            parts.append(str(int(r.integers(0, 10 ** int(r.integers(1, 7))))))
        else:
            parts.append(["🙂", "👩‍👩‍👧", "e\u0301", "Ā", "Ġ", "Ċ"][int(r.integers(6))])
    return "".join(parts)


EDGE_CASES = [
    "",
    "a",
    " ",
    "   ",
    "\n",
    "\n\n\n",
    "\t",
    " \t \n ",
    "a  b",
    "a   b\n\n  c",
    "  leading spaces",
    "trailing spaces   ",
    "x\r\ny",
    "line one\n\n    indented\n\tand tabbed\n",
    "don't we'll I'm they've you're it'd she's",
    "'s 'S 'LL '' 'x",
    "12 345 6789 x1y2 3.14 1,000",
    "héllo wörld ünïcödé",
    "🙂🙂 🙂",
    "日本語のテキスト",
    "naïve café",
    "a\u00a0b\u3000c\u2003d",
    "...!!?;:-- (x) [y] {z}",
    "Ā ā Ġ Ċ",
    "👩‍👩‍👧 e\u0301",
]


def _short(s: str, n: int = 50) -> str:
    r = repr(s)
    return r if len(r) <= n else r[: n - 4] + "...'"


def _show(ids: list[Any], vocab: Vocab) -> str:
    return (
        "["
        + ", ".join(repr(vocab[i]) if isinstance(i, int) and i in vocab else repr(i) for i in ids)
        + "]"
    )


def _build(vocab: Vocab, merges: Merges, special_tokens: list[str] | None, module: Any) -> Any:
    return module.Tokenizer(vocab, merges, special_tokens)


class _Tokenizers:
    """The solution's Tokenizer(vocab, merges, special_tokens), built once, and Hugging Face's
    from the same vocab and merges. A comparison that fails reruns the same call on a
    Tokenizer of each known mistake, to name the one whose output the solution's equals."""

    def __init__(self, expect: Any, vocab: Vocab, merges: Merges, special_tokens: list[str] | None):
        self.expect, self.vocab, self.merges, self.special_tokens = expect, vocab, merges, special_tokens
        self.tok = expect.solution.Tokenizer(vocab, merges, special_tokens)
        # `build(module)`: a Tokenizer of `module` (a known mistake's) from the same data. The
        # reruns below close over it rather than over `self`, which holds the solution's
        # tokenizer: a released course knows each rerun by what it closes over.
        self.build = functools.partial(_build, vocab, merges, special_tokens)

    @functools.cached_property
    def hf(self) -> HFTokenizer:
        return _hf(self.vocab, self.merges, self.special_tokens)

    def ids_equal(self, got: Any, expected: list[int], what: str, call: Callable[[Any], Any]) -> None:
        """The ids `call(tokenizer)` gave, naming the tokens (as bytes) around the first difference."""
        if isinstance(got, list) and got != expected:
            i = next(
                (k for k, (a, e) in enumerate(zip(got, expected)) if a != e),
                min(len(got), len(expected)),
            )
            what += (
                f" (first difference at token {i}: expected tokens {_show(expected[i : i + 4], self.vocab)},"
                f" got {_show(got[i : i + 4], self.vocab)})"
            )
        build = self.build
        self.expect.compare(got, expected, lambda m: call(build(m)), name=what)

    def encodes(self, text: str, what: str) -> None:
        """encode(text) must give Hugging Face's ids."""
        self.ids_equal(self.tok.encode(text), _hf_ids(self.hf, text), what, lambda t: t.encode(text))

    def decodes(self, ids: list[int], expected: str, what: str) -> None:
        build = self.build
        self.expect.compare(self.tok.decode(ids), expected, lambda m: build(m).decode(ids),
                            name=f"decode({what}) = {_show(ids[:8], self.vocab)}{'...' if len(ids) > 8 else ''}")

    def round_trips(self, text: str) -> None:
        """decode(encode(text)) must give the text back."""

        def round_trip(tok: Any) -> Any:
            return tok.decode(tok.encode(text))

        build = self.build
        self.expect.compare(round_trip(self.tok), text, lambda m: round_trip(build(m)),
                            name=f"decode(encode({_short(text)}))")

    def streams(self, chunks: list[str], what: str) -> None:
        """encode_iterable(chunks) must yield, lazily, Hugging Face's ids of the joined text."""
        out = self.tok.encode_iterable(chunks)
        check(
            not isinstance(out, (list, tuple)),
            f"encode_iterable({what}) returned a {type(out).__name__}:"
            " it must yield ids lazily (a generator)",
        )
        got = [i for i in out]  # iterating (not list(), which asks a remote generator for len)
        self.ids_equal(
            got,
            _hf_ids(self.hf, "".join(chunks)),
            f"list(encode_iterable({what})), {len(chunks)} chunks, vs encode of the joined text",
            lambda t: list(t.encode_iterable(chunks)),
        )


# --- checks --------------------------------------------------------------------------------


@pytest.mark.points(3)
def test_encode_matches_hf_on_synthetic_text(expect, rng):
    tokenizers = _Tokenizers(expect, *_vocab_and_merges(rng), SPECIALS)
    lang = _language()
    r = rng.child("texts").np
    plain = lang.text(3000, seed=int(r.integers(1 << 30)))
    cases = {
        "synthetic text": plain,
        "synthetic text laid out as a file (indentation, blank lines)": _layout(
            lang.text(3000, seed=int(r.integers(1 << 30))), r
        ),
        "synthetic documents joined by <|endoftext|>": "<|endoftext|>".join(
            lang.documents(4, seed=int(r.integers(1 << 30)))
        ),
    }
    for what, text in cases.items():
        tokenizers.encodes(text, f"encode({what}, {len(text)} characters)")


@pytest.mark.points(2)
def test_encode_edge_cases(expect, rng):
    tokenizers = _Tokenizers(expect, *_vocab_and_merges(rng), SPECIALS)
    r = rng.child("random strings").np
    for text in EDGE_CASES + [_random_text(r) for _ in range(10)]:
        tokenizers.encodes(text, f"encode({_short(text)})")


@pytest.mark.points(2)
def test_special_tokens(expect, rng):
    vocab, merges = _vocab_and_merges(rng)
    docs = _language().documents(2, seed=int(rng.np.integers(1 << 30)))
    texts = [
        "Hello<|endoftext|>world",
        "<|endoftext|>",
        "<|endoftext|><|endoftext|>",
        "<|endoftext|><|endoftext|><|endoftext|>",
        " <|endoftext|> <pad>",
        "<pad><pad>the<pad>",
        "a<|endoftext|>\n<pad>\n\n<|endoftext|><|endoftext|>b",
        "<|endoftext|",
        "<|endoftext|>" + docs[0] + "<|endoftext|><|endoftext|>" + docs[1] + "<pad>",
    ]
    for specials in (SPECIALS, ["<pad>", "<|endoftext|>"], None, []):
        tokenizers = _Tokenizers(expect, vocab, merges, specials)
        for text in texts:
            tokenizers.encodes(text, f"encode({_short(text)}) with special_tokens={specials}")


@pytest.mark.points(2)
def test_merges_applied_by_rank(expect, rng):
    # Shuffled merges: a merge may now use a token that only a later merge creates, so the
    # order in which merges are tried matters; only "lowest rank first, repeatedly" matches HF.
    vocab, merges = _vocab_and_merges(rng)
    r = rng.child("shuffle").np
    shuffled = [merges[int(i)] for i in r.permutation(len(merges))]
    tokenizers = _Tokenizers(expect, vocab, shuffled, SPECIALS)
    texts = [_language().text(2000, seed=int(r.integers(1 << 30))), "a   b\n\n  c", "naïve café 🙂"]
    for text in texts:
        tokenizers.encodes(text, f"encode({_short(text)}) with the merge list shuffled")


# Hand-made merge lists where the order of merging shows. After a merge the new token may
# pair with its neighbour at a LOWER rank than the pair just merged; HF merges only the
# leftmost occurrence of the best pair and then looks at all pairs again, so that new pair
# goes first. Merging every occurrence of the best pair at once gives other tokens:
# "abab" with [(ab, a), (a, b)] is [aba, b] in HF, [ab, ab] all at once. Each list's first
# text also tells both from applying the merges in list order ("ababa": HF [aba, b, a], all
# at once [ab, aba], list order [ab, ab, a]), so the right known mistake is named.
ORDER_CASES: list[tuple[Merges, list[str]]] = [
    ([(b"ab", b"a"), (b"a", b"b")], ["ababa", "abab", "ababab", "xabab abab", "aabab"]),
    ([(b"aa", b"a"), (b"a", b"a")], ["aaaaa", "aaaa", " aaaaaa"]),
    ([(b"a", b"a")], ["aaa", "aaaaa"]),  # overlapping occurrences: the leftmost goes first
    ([(b"abc", b"a"), (b"ab", b"c"), (b"a", b"b")], ["abcabc", "abcabcabc"]),
]


def _small_vocab(merges: Merges, rng: Rng) -> Vocab:
    """Every byte and every merge's product, under shuffled ids."""
    tokens = [bytes([b]) for b in range(256)]
    tokens += [t for t in dict.fromkeys(a + b for a, b in merges) if t not in tokens]
    perm = rng.np.permutation(len(tokens))
    return {int(perm[i]): token for i, token in enumerate(tokens)}


@pytest.mark.points(2)
def test_merges_one_occurrence_at_a_time(expect, rng):
    for k, (merges, texts) in enumerate(ORDER_CASES):
        tokenizers = _Tokenizers(expect, _small_vocab(merges, rng.child("vocab", k)), merges, None)
        shown = "[" + ", ".join(f"({a!r}, {b!r})" for a, b in merges) + "]"
        for text in texts:
            tokenizers.encodes(text, f"encode({text!r}) with merges {shown} (rank = index)")


@pytest.mark.points(2)
def test_decode(expect, rng):
    vocab, merges = _vocab_and_merges(rng)
    tokenizers = _Tokenizers(expect, vocab, merges, SPECIALS)
    hf = tokenizers.hf
    id_of = {token: i for i, token in vocab.items()}
    r = rng.child("ids").np
    all_ids = sorted(vocab)
    emoji = "🙂".encode()
    cases: list[tuple[str, list[int]]] = [
        ("[] (no ids)", []),
        (
            "the ids of a synthetic text with special tokens",
            _hf_ids(
                hf,
                "<|endoftext|>" + _language().text(1500, seed=int(r.integers(1 << 30))) + "<pad>",
            ),
        ),
        (
            "the ids of '日本語 naïve 🙂' (characters split over tokens)",
            _hf_ids(hf, "日本語 naïve 🙂"),
        ),
        ("the first 2 of the 4 bytes of an emoji", [id_of[emoji[:1]], id_of[emoji[1:2]]]),
        (
            "'a', 3 bytes of an emoji, 'b'",
            [id_of[b"a"], *(id_of[emoji[k : k + 1]] for k in range(3)), id_of[b"b"]],
        ),
        ("a lone continuation byte 0x80", [id_of[b"\x80"]]),
        ("bytes ED A0 80 (an encoded surrogate)", [id_of[b"\xed"], id_of[b"\xa0"], id_of[b"\x80"]]),
        ("bytes C0 AF FF (overlong and invalid)", [id_of[b"\xc0"], id_of[b"\xaf"], id_of[b"\xff"]]),
    ]
    for k in range(12):  # random tokens: many byte sequences are not valid UTF-8
        cases.append(
            (
                f"random ids #{k}",
                [all_ids[int(i)] for i in r.integers(0, len(all_ids), int(r.integers(1, 12)))],
            )
        )
    for what, ids in cases:
        expected = hf.decode(ids, skip_special_tokens=False)
        assert expected == b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
        tokenizers.decodes(ids, expected, what)


@pytest.mark.points(2)
def test_round_trip(expect, rng):
    tokenizers = _Tokenizers(expect, *_vocab_and_merges(rng), SPECIALS)
    r = rng.child("random strings").np
    texts = [
        _language().text(1000, seed=int(r.integers(1 << 30))),
        "",
        "  \n\n\t \r\n   ",
        "🙂👩‍👩‍👧🙂",
        "日本語 한국어 Ελληνικά русский",
        "x<|endoftext|>y<pad>z<|endoftext|><|endoftext|>",
    ] + [_random_text(r) for _ in range(12)]
    for text in texts:
        tokenizers.round_trips(text)


@pytest.mark.points(2)
def test_encode_iterable(expect, rng):
    tokenizers = _Tokenizers(expect, *_vocab_and_merges(rng), SPECIALS)
    r = rng.child("chunks").np
    text = _layout(_language().text(2500, seed=int(r.integers(1 << 30))), r)
    text = text.replace("!\n", "!<|endoftext|>\n", 2)
    lines = text.splitlines(keepends=True)
    cut = np.sort(
        r.choice(np.arange(1, len(lines)), size=min(6, len(lines) - 1), replace=False)
    ).tolist()
    groups = ["".join(lines[a:b]) for a, b in zip([0, *cut], [*cut, len(lines)])]
    cases = {
        "the lines of a file (indentation, blank lines)": lines,
        "groups of several lines": groups,
        "lines, the last without a newline": lines + ["  the end"],
        "whitespace-only lines": ["\n", "\n", "  \n", "\t\n", "   x\n", "\n", " y"],
        "one chunk": ["one chunk, no newline"],
        "no chunks": [],
    }
    for what, chunks in cases.items():
        tokenizers.streams(chunks, what)


# --- hidden --------------------------------------------------------------------------------

# The synthetic language has no '<', '/' or '>': these are only ever special tokens.
HIDDEN_SPECIALS = ["<s>", "</s>", "<s><s>"]


def _fresh_vocab_and_merges(rng: Rng) -> tuple[Vocab, Merges]:
    """A vocab and merges the public checks never use: HF's BpeTrainer on fresh text with a
    fresh vocab size and special tokens, two whitespace merges added, the ids renumbered
    and the merge list shuffled."""
    r = rng.np
    text = _language().text(6000, seed=int(r.integers(1 << 30)))
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=int(r.integers(300, 600)),
        min_frequency=2,
        special_tokens=HIDDEN_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text, _layout(text, r)], trainer)
    model = json.loads(tok.to_str())["model"]
    perm = r.permutation(len(model["vocab"]))
    vocab = {int(perm[i]): _to_bytes(s) for s, i in model["vocab"].items()}
    merges = [(_to_bytes(a), _to_bytes(b)) for a, b in model["merges"]]
    # whitespace merges, so that where a stream is cut between two lines changes the ids
    for a, b in [(b"\n", b"\n"), (b"\n", b" ")]:
        if (a, b) not in merges:
            merges.append((a, b))
            if a + b not in vocab.values():
                vocab[len(vocab)] = a + b
    return vocab, [merges[int(i)] for i in r.permutation(len(merges))]


@pytest.mark.hidden
def test_hidden_fresh_vocab_and_extreme_inputs(expect, rng):
    """A vocabulary, merge order and special tokens (one a prefix of another) that the
    public checks never use, and inputs at the extremes: one-character texts, pre-tokens
    hundreds of bytes long (whitespace runs, a repeated word, a long number), special tokens
    at both ends and back to back, a stream of one-line chunks; ids against Hugging Face,
    decode(encode(text)) == text, and decode of random ids."""
    tokenizers = _Tokenizers(expect, *_fresh_vocab_and_merges(rng.child("vocab")), HIDDEN_SPECIALS)
    r = rng.child("texts").np
    word = max(_language().tokens[6:], key=len)
    n = int(r.integers(100, 400))
    texts = [_POOL[int(i)] for i in r.integers(0, len(_POOL), 12)] + [str(r.choice(_WHITESPACE))]
    texts += [" " * n + "x", "\n" * n, "x" + "\t " * (n // 2), word * (n // len(word)),
              "".join(str(d) for d in r.integers(0, 10, n))]
    for _ in range(4):
        pieces = [_random_text(r) + str(r.choice(HIDDEN_SPECIALS + [""])) for _ in range(int(r.integers(2, 6)))]
        texts.append(str(r.choice(HIDDEN_SPECIALS)) + "".join(pieces) + "<s><s><s></s>")
    for text in texts:
        tokenizers.encodes(text, f"encode({_short(text)}) with special_tokens={HIDDEN_SPECIALS}")
        tokenizers.round_trips(text)
    all_ids = sorted(tokenizers.vocab)
    for k in range(6):  # random tokens: many byte sequences are not valid UTF-8
        ids = [all_ids[int(i)] for i in r.integers(0, len(all_ids), int(r.integers(1, 12)))]
        truth = b"".join(tokenizers.vocab[i] for i in ids).decode("utf-8", errors="replace")
        tokenizers.decodes(ids, truth, f"random ids #{k}")
    lines = _layout(_language().text(1500, seed=int(r.integers(1 << 30))), r).splitlines(keepends=True)
    tokenizers.streams(lines + ["\n", "</s><s>\n", "  last"], "one-line chunks, blank lines, special tokens")
