"""A byte-level BPE tokenizer (GPT-2 style): encode text to ids and decode ids to text.

You are given a trained vocabulary and merge list and implement the tokenizer that uses
them. Do not use `tokenizers`, `transformers` or `tiktoken`: write the algorithm yourself.
The judge compares your ids with a Hugging Face `tokenizers` BPE built from the same vocab
and merges (byte-level, `ByteLevel(add_prefix_space=False)` pre-tokenizer, the special
tokens added with `add_special_tokens`): they must be identical.

Inputs (the caller guarantees them; you need not validate):
- `vocab: dict[int, bytes]` maps token id -> the token's bytes. It contains every single
  byte (bytes([b]) for b in 0..255), the concatenation a + b of every merge, and the UTF-8
  encoding of every special token. Ids are arbitrary: byte b does NOT have id b in general.
- `merges: list[tuple[bytes, bytes]]`: the merge of (a, b) into a + b has rank = its index
  in the list (rank 0 is applied first). The list may be in any order: a merge may use a
  token that only a later (higher-rank) merge creates.
- `special_tokens: list[str] | None`: strings that each encode to one id (the id whose
  bytes are the string's UTF-8 encoding). None or [] means no special tokens: then text
  such as "<|endoftext|>" is ordinary text.

Encoding, `encode(text)`:
1. Split the text on special tokens, scanning left to right; where several special tokens
   match at the same position, the LONGEST wins (with "<|endoftext|>" and
   "<|endoftext|><|endoftext|>" both special, "<|endoftext|><|endoftext|>" is one token).
   A special token becomes its single id; it is never pre-tokenized or merged.
2. Pre-tokenize each piece of text between special tokens with GPT-2's pattern (the one
   Hugging Face's ByteLevel pre-tokenizer uses), `PATTERN` below, with the third-party
   `regex` module (`regex.findall(PATTERN, piece)`; Python's `re` has no `\\p{L}`). No space
   is added in front of the text. Merges never cross a pre-token boundary.
3. BPE on each pre-token: start from its UTF-8 bytes, one single-byte token each. Then
   repeat: among the adjacent pairs (left, right) of the current tokens that are in
   `merges`, take the pair of lowest rank; if it occurs more than once, merge ONLY its
   LEFTMOST occurrence into one token left + right, then look at all the pairs again;
   stop when no adjacent pair is in `merges`. Emit the ids of the final tokens.
   One occurrence at a time matters: the new token may pair with its right neighbour at a
   lower rank than the pair just merged, and then that pair goes next. With merges
   [(b"ab", b"a"), (b"a", b"b")], "abab" becomes ab|a|b, then aba|b (the ids of
   [b"aba", b"b"], as in Hugging Face), not ab|ab as merging every occurrence at once
   gives. (For a merge list in the order training produced it, this is the same as
   applying the merges in list order; for a list in any other order it is not, and the
   judge uses one.)
The result is a list of Python ints; the empty string encodes to [].

Decoding, `decode(ids)`: concatenate the bytes of all the tokens (special tokens included),
then decode the whole byte string as UTF-8 with errors="replace": every invalid or
truncated byte sequence becomes U+FFFD ("\\ufffd") exactly as Python's
`bytes.decode("utf-8", errors="replace")` does. So decode(encode(s)) == s for every string.

Streaming, `encode_iterable(chunks)`: a generator that takes an iterable of strings (e.g.
the lines of a file, `open(path)`) and yields ids one by one, lazily, without first
joining the whole stream. Contract: every chunk except possibly the last ends with "\\n",
and no special token contains "\\n". Under that contract the ids must be exactly
`encode("".join(chunks))`. Careful: a pre-token can span a chunk boundary, since a chunk's
trailing whitespace joins the next chunk's leading whitespace ("a\\n" then "\\n  b" is
"a", "\\n\\n ", " b" as one text, not "a", "\\n", "\\n ", " b").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import regex  # noqa: F401

# GPT-2's pre-tokenizer pattern. Hugging Face writes the contractions as 's|'t|'re|'ve|'m|'ll|'d:
# the same matches.
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Tokenizer:
    """A byte-level BPE tokenizer for one vocabulary, merge list and set of special tokens."""

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
    ) -> None:
        """Keep the vocabulary and merges (see the module docstring for what they contain)."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """The token ids of `text` (special tokens, then pre-tokens, then BPE by merge rank)."""
        raise NotImplementedError

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Yield the ids of "".join(iterable) lazily; chunks (but the last) end with "\\n"."""
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        """The text of `ids`: their bytes joined, decoded as UTF-8 with errors="replace"."""
        raise NotImplementedError
