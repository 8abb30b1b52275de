"""Checks for tokenization.pretokenize: GPT-2's byte table, regex pre-tokens, special tokens.

Ground truth is Hugging Face: transformers' GPT-2 `bytes_to_unicode` table, and `tokenizers`'
ByteLevel pre-tokenizer (add_prefix_space=False, use_regex=True), inside a Tokenizer with added
special tokens where special tokens are involved. Every expected value is also checked against
the reference, so the two ground truths can never silently drift apart.
"""

from __future__ import annotations

import functools

import pytest

from grader.compare import assert_equal, check
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


def _check_pretokenize(solution, reference, mistakes, texts: list[str], what: str) -> None:
    for text in texts:
        expected = _expect_pretokens(reference, text)
        assert_equal(solution.pretokenize(text), expected, name=f"pretokenize({text!r}) [{what}]",
                     mistakes=mistakes(lambda m, t=text: m.pretokenize(t)))


# --- checks --------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_bytes_to_unicode_matches_gpt2(solution, reference, mistakes):
    expected = _gpt2_table()
    assert expected == _table_from_definition() == reference.bytes_to_unicode()
    got = solution.bytes_to_unicode()
    assert_equal(got, expected, name="bytes_to_unicode() against GPT-2's table (transformers)",
                 mistakes=mistakes(lambda m: m.bytes_to_unicode()))


@pytest.mark.points(2)
def test_pretokenize_whitespace_runs(solution, reference, mistakes):
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
    _check_pretokenize(solution, reference, mistakes, texts, "whitespace runs")


@pytest.mark.points(2)
def test_pretokenize_contractions(solution, reference, mistakes):
    texts = [
        "don't",
        "they'll be there",
        "I'M SHOUTING",  # uppercase: 'M is not a contraction for the case-sensitive pattern
        "She's sure we've won, you're right, I'd go",
        "DON'T they'LL It'S",
        "'tis o'clock rock'n'roll",
        "quote '' and 'quoted'",
    ]
    _check_pretokenize(solution, reference, mistakes, texts, "contractions")


def test_pretokenize_unicode_and_digits(solution, reference, mistakes):
    texts = [
        "café naïve Zürich déjà",
        "emoji 🙂🙂 here🙂!",
        "v2.0beta x2y 3.14 1,000,000 42nd",
        "中文字 and 日本",
        "e\u0301 combining",  # a combining accent is a mark, not a letter: its own pre-token
        "x² ½ Ⅻ",
        "...!?; -- ()",
    ]
    _check_pretokenize(solution, reference, mistakes, texts, "unicode and digits")


@pytest.mark.points(2)
def test_pretokenize_synthetic_text(solution, reference, mistakes, rng):
    lang = _language()
    for k in range(2):
        text = lang.text(1500, seed=int(rng.np.integers(1 << 30)))
        expected = _expect_pretokens(reference, text)
        got = solution.pretokenize(text)
        check(isinstance(got, list), f"pretokenize must return a list, got {type(got).__name__}")
        assert_equal(got, expected, name=f"pretokenize(synthetic text #{k}, {len(text)} chars)",
                     mistakes=mistakes(lambda m, t=text: m.pretokenize(t)))


def test_pretokenize_random_strings(solution, reference, mistakes, rng):
    alphabet = list("abcXYZéü0123456789'-.,!") + [" ", " ", " ", "  ", "\t", "\n", "🙂", "中", "'s", "'LL"]
    for k in range(12):
        n = int(rng.np.integers(1, 16))
        text = "".join(alphabet[int(i)] for i in rng.np.integers(0, len(alphabet), n))
        expected = _expect_pretokens(reference, text)
        got = solution.pretokenize(text)
        assert_equal(got, expected, name=f"pretokenize({text!r}) [random string #{k}]",
                     mistakes=mistakes(lambda m, t=text: m.pretokenize(t)))


def test_empty_string(solution, mistakes):
    assert_equal(solution.pretokenize(""), [], name='pretokenize("")')
    assert_equal(solution.split_special_tokens("", SPECIALS), [], name='split_special_tokens("", specials)',
                 mistakes=mistakes(lambda m: m.split_special_tokens("", SPECIALS)))
    assert_equal(solution.split_special_tokens("", []), [], name='split_special_tokens("", [])')
    assert_equal(solution.split_special_tokens("no specials", []), [("no specials", False)],
                 name='split_special_tokens("no specials", [])')
    assert_equal(solution.pretokenize_bytes("", SPECIALS), [], name='pretokenize_bytes("", specials)')


@pytest.mark.points(2)
def test_split_special_tokens(solution, reference, mistakes):
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
        assert_equal(solution.split_special_tokens(text, SPECIALS), expected,
                     name=f"split_special_tokens({text!r}, {SPECIALS})",
                     mistakes=mistakes(lambda m, t=text: m.split_special_tokens(t, SPECIALS)))


@pytest.mark.points(2)
def test_pretokenize_bytes(solution, reference, mistakes, rng):
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
        assert_equal(solution.pretokenize_bytes(text, specials), expected,
                     name=f"pretokenize_bytes({shown!r}, {specials})",
                     mistakes=mistakes(lambda m, t=text: m.pretokenize_bytes(t, specials)))
