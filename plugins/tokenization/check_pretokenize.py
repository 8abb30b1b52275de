"""Checks for tokenization.pretokenize: GPT-2's byte table, regex pre-tokens, special tokens.

Ground truth is Hugging Face: transformers' GPT-2 `bytes_to_unicode` table, and `tokenizers`'
ByteLevel pre-tokenizer (add_prefix_space=False, use_regex=True), inside a Tokenizer with added
special tokens where special tokens are involved. Every expected value is also checked against
the reference, so the two ground truths can never silently drift apart.
"""

from __future__ import annotations

import functools

import pytest

from grader.compare import check
from grader.synthlang import SyntheticLanguage

SPECIALS = ["<|endoftext|>", "<|eot|>", "<|eot|><|eot|>", "<pad>"]


# --- ground truth --------------------------------------------------------------------------


def _gpt2_table() -> dict[int, str]:
    """transformers' GPT-2 bytes_to_unicode (it moved out of tokenization_gpt2 in 5.x)."""
    try:
        from transformers.convert_slow_tokenizer import bytes_to_unicode
    except ImportError:  # elsewhere in other versions: rebuild it from its definition
        try:
            from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
        except ImportError:
            bytes_to_unicode = _table_from_definition
    return dict(bytes_to_unicode())


def _table_from_definition() -> dict[int, str]:
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    rest = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(rest)}}


@functools.cache
def _byte_level():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def hf_pretokens(text: str) -> list[str]:
    """The raw text of each pre-token HF's ByteLevel pre-tokenizer finds (offsets are chars)."""
    return [text[s:e] for _, (s, e) in _byte_level().pre_tokenize_str(text)]


def hf_byte_form(pre_token: str) -> str:
    """HF's byte-mapped ("Ġ") form of one pre-token (a pre-token is its own only pre-token)."""
    pieces = _byte_level().pre_tokenize_str(pre_token)
    assert len(pieces) == 1, (pre_token, pieces)
    return pieces[0][0]


def hf_with_specials(text: str, specials: list[str]) -> list[tuple[str, bool]]:
    """(raw pre-token, is_special) from a HF Tokenizer with ByteLevel and added special tokens.

    A WordLevel model that knows no word turns each pre-token into exactly one (unknown) token,
    so the encoding's offsets are the pre-tokens; added special tokens keep their own ids.
    """
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel({"[unk]": 0}, unk_token="[unk]"))
    tok.pre_tokenizer = _byte_level()
    tok.add_special_tokens(specials)
    enc = tok.encode(text, add_special_tokens=False)
    return [(text[s:e], i != 0) for i, (s, e) in zip(enc.ids, enc.offsets)]


def hf_split(text: str, specials: list[str]) -> list[tuple[str, bool]]:
    """HF's special-token split: consecutive ordinary pre-tokens joined back into one piece."""
    out: list[tuple[str, bool]] = []
    for piece, special in hf_with_specials(text, specials):
        if not special and out and not out[-1][1]:
            out[-1] = (out[-1][0] + piece, False)
        else:
            out.append((piece, special))
    return out


def hf_pretokenize_bytes(text: str, specials: list[str]) -> list[str]:
    return [p if special else hf_byte_form(p) for p, special in hf_with_specials(text, specials)]


@functools.cache
def _language() -> SyntheticLanguage:
    return SyntheticLanguage(seed=0)


def _expect_pretokens(reference, text: str) -> list[str]:
    expected = hf_pretokens(text)
    assert reference.pretokenize(text) == expected, f"reference and tokenizers disagree on {text!r}"
    return expected


def _check_pretokenize(expect, reference, texts: list[str], what: str) -> None:
    for text in texts:
        expect(lambda s, t=text: s.pretokenize(t), truth=_expect_pretokens(reference, text),
               name=f"pretokenize({text!r}) [{what}]")


# --- checks --------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_bytes_to_unicode_matches_gpt2(expect, reference):
    expected = _gpt2_table()
    assert expected == _table_from_definition() == reference.bytes_to_unicode()
    expect(lambda s: s.bytes_to_unicode(), truth=expected,
           name="bytes_to_unicode() against GPT-2's table (transformers)")


@pytest.mark.points(2)
def test_pretokenize_whitespace_runs(expect, reference):
    texts = [
        "a  b",  # two spaces before a word: the last one goes with the word
        "hello   world",
        "trailing spaces  ",
        "  leading spaces",
        "one\ntwo",
        "para.\n\nNext one",
        "tab\tbefore\t\tword",
        "x \n y",
        "mixed \t\n  run",
        "   ",
        "\n",
    ]
    _check_pretokenize(expect, reference, texts, "whitespace runs")


@pytest.mark.points(2)
def test_pretokenize_contractions(expect, reference):
    texts = [
        "don't",
        "they'll be there",
        "I'M SHOUTING",  # uppercase: 'M is not a contraction for the case-sensitive pattern
        "She's sure we've won, you're right, I'd go",
        "DON'T they'LL It'S",
        "'tis o'clock rock'n'roll",
        "quote '' and 'quoted'",
    ]
    _check_pretokenize(expect, reference, texts, "contractions")


def test_pretokenize_unicode_and_digits(expect, reference):
    texts = [
        "café naïve Zürich déjà",
        "emoji 🙂🙂 here🙂!",
        "v2.0beta x2y 3.14 1,000,000 42nd",
        "中文字 and 日本",
        "e\u0301 combining",  # a combining accent is a mark, not a letter: its own pre-token
        "x² ½ Ⅻ",
        "...!?; -- ()",
    ]
    _check_pretokenize(expect, reference, texts, "unicode and digits")


@pytest.mark.points(2)
def test_pretokenize_synthetic_text(expect, reference, rng):
    lang = _language()
    for k in range(2):
        text = lang.text(1500, seed=int(rng.np.integers(1 << 30)))
        got = expect(lambda s, t=text: s.pretokenize(t), truth=_expect_pretokens(reference, text),
                     name=f"pretokenize(synthetic text #{k}, {len(text)} chars)")
        check(isinstance(got, list), f"pretokenize must return a list, got {type(got).__name__}")


def test_pretokenize_random_strings(expect, reference, rng):
    alphabet = list("abcXYZéü0123456789'-.,!") + [" ", " ", " ", "  ", "\t", "\n", "🙂", "中", "'s", "'LL"]
    for k in range(12):
        n = int(rng.np.integers(1, 16))
        text = "".join(alphabet[int(i)] for i in rng.np.integers(0, len(alphabet), n))
        expect(lambda s, t=text: s.pretokenize(t), truth=_expect_pretokens(reference, text),
               name=f"pretokenize({text!r}) [random string #{k}]")


def test_empty_string(expect):
    expect(lambda s: s.pretokenize(""), truth=[], name='pretokenize("")')
    expect(lambda s: s.split_special_tokens("", SPECIALS), truth=[], name='split_special_tokens("", specials)')
    expect(lambda s: s.split_special_tokens("", []), truth=[], name='split_special_tokens("", [])')
    expect(lambda s: s.split_special_tokens("no specials", []), truth=[("no specials", False)],
           name='split_special_tokens("no specials", [])')
    expect(lambda s: s.pretokenize_bytes("", SPECIALS), truth=[], name='pretokenize_bytes("", specials)')


@pytest.mark.points(2)
def test_split_special_tokens(expect, reference):
    texts = [
        "Hello<|endoftext|>world",
        "<|endoftext|>starts and ends<|endoftext|>",
        "<|eot|><|eot|><|eot|>",  # the longer special token wins where both match
        "a<|eot|>b <|eot|><|eot|> c<|eot|>",
        "<pad><pad><|endoftext|><pad>",
        "near misses: <|endof <|eot| > |eot|> <pad",
        "no special tokens at all",
    ]
    for text in texts:
        expected = hf_split(text, SPECIALS)
        assert reference.split_special_tokens(text, SPECIALS) == expected
        expect(lambda s, t=text: s.split_special_tokens(t, SPECIALS), truth=expected,
               name=f"split_special_tokens({text!r}, {SPECIALS})")


@pytest.mark.points(2)
def test_pretokenize_bytes(expect, reference, rng):
    specials = ["<|endoftext|>", "<|user turn|>", "⟨sep⟩"]
    docs = _language().documents(3, seed=int(rng.np.integers(1 << 30)))
    cases = [
        "Hi  there<|endoftext|> café",
        "word<|user turn|>word ⟨sep⟩⟨sep⟩<|endoftext|>\n",
        "  déjà vu <|user turn|>\tnaïve\n\n",  # latin-1 letters only: no character above ÿ
        "emoji🙂<|endoftext|>🙂 don't\r\n",
        "<|endoftext|>".join(docs),
    ]
    for text in cases:
        expected = hf_pretokenize_bytes(text, specials)
        assert reference.pretokenize_bytes(text, specials) == expected
        shown = text if len(text) < 80 else f"<{len(docs)} synthetic documents joined by <|endoftext|>>"
        expect(lambda s, t=text: s.pretokenize_bytes(t, specials), truth=expected,
               name=f"pretokenize_bytes({shown!r}, {specials})")


# Characters on which Python's `regex` and tokenizers' pre-tokenizer agree: scripts, combining
# marks, symbols, CJK, Hangul, full-width forms, emoji; and whitespace of every kind.
_RANGES = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x391, 0x3C9), (0x400, 0x45F), (0x5D0, 0x5EA),
           (0x620, 0x669), (0x900, 0x97F), (0x2000, 0x206F), (0x2200, 0x22FF), (0x3000, 0x30FF),
           (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF01, 0xFF5E), (0x1F300, 0x1F64F)]
_POOL = [chr(c) for lo, hi in _RANGES for c in range(lo, hi + 1)]
_WHITESPACE = [" ", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u2003", "\u3000"]
# Special tokens: regex metacharacters, a space, and one special token a prefix of another
HIDDEN_SPECIALS = ["[MASK]", "(.*)", "[MASK][MASK]", "$1^| \\d+"]


def _fragment(r) -> str:
    kind = int(r.integers(4))
    if kind == 0:
        return "".join(_POOL[int(i)] for i in r.integers(0, len(_POOL), int(r.integers(1, 6))))
    if kind == 1:
        return "".join(_WHITESPACE[int(i)] for i in r.integers(0, len(_WHITESPACE), int(r.integers(1, 4))))
    if kind == 2:
        return ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "''", "'"][int(r.integers(10))]
    return str(int(r.integers(0, 10 ** int(r.integers(1, 7)))))


@pytest.mark.hidden
def test_hidden_random_text_with_special_tokens(expect, rng):
    """Fresh special tokens and text the public checks do not show: specials made of regex
    metacharacters, one holding a space, one a prefix of another; every one present, two
    back to back and one at each end, between random fragments over a wide character pool
    (scripts, combining marks, CJK, emoji, every kind of whitespace); and one-character
    texts. pretokenize, split_special_tokens and pretokenize_bytes against tokenizers."""
    r = rng.np
    texts = []
    for _ in range(6):
        pieces = [_fragment(r) for _ in range(int(r.integers(8, 25)))]
        for special in HIDDEN_SPECIALS + ["".join(r.choice(HIDDEN_SPECIALS, 2))]:
            pieces.insert(int(r.integers(len(pieces) + 1)), special)
        texts.append(str(r.choice(HIDDEN_SPECIALS)) + "".join(pieces) + str(r.choice(HIDDEN_SPECIALS)))
    cases = [(f"random text #{k}", text) for k, text in enumerate(texts)]
    cases += [("one character", _POOL[int(i)]) for i in r.integers(0, len(_POOL), 10)]
    cases += [("one character", str(r.choice([w for w in _WHITESPACE if len(w) == 1])))]
    cases += [("one special token", s) for s in HIDDEN_SPECIALS]
    for what, text in cases:
        expect(lambda s, t=text: s.pretokenize(t), truth=hf_pretokens(text), name=f"pretokenize({text!r}) [{what}]")
        expect(lambda s, t=text: s.split_special_tokens(t, HIDDEN_SPECIALS), truth=hf_split(text, HIDDEN_SPECIALS),
               name=f"split_special_tokens({text!r}, {HIDDEN_SPECIALS}) [{what}]")
        expect(lambda s, t=text: s.pretokenize_bytes(t, HIDDEN_SPECIALS),
               truth=hf_pretokenize_bytes(text, HIDDEN_SPECIALS),
               name=f"pretokenize_bytes({text!r}, {HIDDEN_SPECIALS}) [{what}]")
