"""GPT-2 style pre-tokenisation and the byte-to-unicode table (the "Ġ" form).

Before byte-level BPE sees any text, GPT-2 (and every tokenizer built on Hugging Face's
`ByteLevel` pre-tokenizer) does three things, which you implement here:

1. `split_special_tokens`: cut the special tokens (e.g. "<|endoftext|>") out of the text, so
   they are never split or merged;
2. `pretokenize`: split each remaining piece into pre-tokens ("words") with the GPT-2 regex
   `GPT2_PATTERN` below; BPE merges never cross a pre-token boundary;
3. `bytes_to_unicode` / `pretokenize_bytes`: write every pre-token's UTF-8 bytes as printable
   characters, one character per byte, so that a space becomes "Ġ" and a newline "Ċ" (this is
   the form GPT-2's vocab.json and merges.txt are written in).

Your results are compared exactly with Hugging Face `tokenizers`
(`tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)`, plus its added
special tokens), with GPT-2's byte table as transformers defines it, and with the reference.
Do not import `transformers` or `tokenizers` in your solution.

The pattern. Use the third-party `regex` package (`import regex`; it is installed with
transformers). The standard library's `re` does not understand `\\p{L}` (any Unicode letter) or
`\\p{N}` (any Unicode number). Hugging Face spells the same pattern
`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+`; the two
spellings match exactly the same strings. Its alternatives, tried in this order at each position:

    "'(?:[sdmt]|ll|ve|re)"  an English contraction suffix, apostrophe included: 's 'd 'm 't 'll
                            've 're (lowercase only)
    " ?\\p{L}+"              a run of letters, with at most one space glued in front
    " ?\\p{N}+"              a run of numbers (digits), idem
    " ?[^\\s\\p{L}\\p{N}]+"    a run of anything else (punctuation, emoji, symbols), idem
    "\\s+(?!\\S)"             a run of whitespace NOT followed by a non-space: this leaves the
                            last space of a run for the next word (" b" in "a  b")
    "\\s+"                   any remaining whitespace (e.g. the single "\\n" before a word)

Consequences worth knowing (all checked):
- "don't they'll" -> ["don", "'t", " they", "'ll"]. The pattern is CASE-SENSITIVE: "I'M" ->
  ["I", "'", "M"] ("'M" is not a contraction suffix; do not add IGNORECASE).
- "a  b" -> ["a", " ", " b"];  "a  " -> ["a", "  "];  "a\\n\\nb" -> ["a", "\\n", "\\n", "b"];
  "\\t word" -> ["\\t", " word"];  "x2y 3.14" -> ["x", "2", "y", " 3", ".", "14"].
- Accented letters are letters (" café" is one pre-token); "🙂🙂" is one run of "other".
- "".join(pretokenize(text)) == text always, and pretokenize("") == [].
"""

from __future__ import annotations

import regex  # noqa: F401

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible table from each byte value 0..255 to a one-character string.

    - The 188 "printable" bytes map to the latin-1 character with the same code:
      33..126 ('!'..'~'), 161..172 ('¡'..'¬') and 174..255 ('®'..'ÿ'): b -> chr(b).
    - The other 68 bytes (0..32, 127..160 and 173, i.e. controls, space, DEL, no-break space,
      soft hyphen) map to chr(256 + n), where n counts them IN INCREASING BYTE ORDER from 0:
      byte 0 -> chr(256) 'Ā', byte 10 (newline) -> chr(266) 'Ċ', byte 32 (space) -> chr(288)
      'Ġ', byte 127 -> chr(289) 'ġ', byte 173 -> chr(323) 'Ń'.

    Returns a dict with exactly the 256 int keys 0..255 and 256 distinct one-character str
    values (the insertion order of the dict does not matter).
    """
    raise NotImplementedError


def pretokenize(text: str) -> list[str]:
    """Split `text` into GPT-2 pre-tokens: `regex.findall(GPT2_PATTERN, text)`.

    Returns the list of matched strings in order (raw text, not byte-mapped); every character of
    `text` belongs to exactly one pre-token, so their concatenation is `text`. "" -> [].
    Special tokens are NOT handled here: "<|endoftext|>" splits like any other text.
    """
    raise NotImplementedError


def split_special_tokens(text: str, special_tokens: list[str]) -> list[tuple[str, bool]]:
    """Cut `text` into pieces that are special tokens and pieces of ordinary text.

    Returns a list of (piece, is_special) tuples, `is_special` a Python bool, in text order,
    whose pieces concatenate to `text`:
    - Matching scans left to right: the leftmost occurrence of any special token is cut out
      whole, then scanning resumes right after it (matches never overlap). If several special
      tokens match at the same position (one is a prefix of another), the LONGEST wins: with
      ["<|eot|>", "<|eot|><|eot|>"], the text "<|eot|><|eot|><|eot|>" gives
      [("<|eot|><|eot|>", True), ("<|eot|>", True)].
    - Special tokens are literal strings, not regular expressions ("<|endoftext|>" contains
      "|"): escape them if you build a pattern.
    - Empty pieces are dropped: adjacent special tokens give no ("", False) between them, and a
      text that starts or ends with a special token gives no empty piece at that end.
    - Consecutive ordinary text stays ONE piece (it is not pre-tokenised here).
    - No special tokens (an empty list): [(text, False)], or [] when text is "".

    Special tokens are non-empty strings; the list may hold duplicates and tokens that do not
    occur in the text. Example: split_special_tokens("Hi<|eot|><|eot|> yo", ["<|eot|>"]) ->
    [("Hi", False), ("<|eot|>", True), ("<|eot|>", True), (" yo", False)].
    """
    raise NotImplementedError


def pretokenize_bytes(text: str, special_tokens: list[str]) -> list[str]:
    """Pre-tokens of `text` in GPT-2's byte-mapped form, special tokens kept whole.

    Split with `split_special_tokens(text, special_tokens)`, then in order:
    - a special token is appended exactly as given: never pre-tokenised and never byte-mapped,
      even when it contains spaces or non-ASCII characters;
    - each text piece is pre-tokenised ON ITS OWN with `pretokenize` (so whitespace before a
      special token is not glued to the word after it), and every pre-token is appended as
      "".join(bytes_to_unicode()[b] for b in pre_token.encode("utf-8")).

    Example: pretokenize_bytes("Hi  there<|eot|> café", ["<|eot|>"]) ->
    ["Hi", "Ġ", "Ġthere", "<|eot|>", "ĠcafÃ©"]   ("é" is the two bytes C3 A9 -> "Ã©").
    This is what a Hugging Face Tokenizer with the ByteLevel pre-tokenizer
    (add_prefix_space=False) and these special tokens produces. "" -> [].
    """
    raise NotImplementedError
