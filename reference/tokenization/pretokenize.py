"""GPT-2 pre-tokenisation: the byte-to-unicode table, the regex split and special tokens."""

from __future__ import annotations

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

_PAT = regex.compile(GPT2_PATTERN)


def bytes_to_unicode() -> dict[int, str]:
    # bytes whose latin-1 character is printable and not a space map to that character
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = list(bs)
    # the other 68 bytes (controls, space, DEL, NBSP, soft hyphen) get chr(256 + n) in byte order
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def pretokenize(text: str) -> list[str]:
    return _PAT.findall(text)


def split_special_tokens(text: str, special_tokens: list[str]) -> list[tuple[str, bool]]:
    if not special_tokens:
        return [(text, False)] if text else []
    # longest first, so that at any position the longest special token that matches wins
    ordered = sorted(set(special_tokens), key=len, reverse=True)
    pattern = "(" + "|".join(regex.escape(s) for s in ordered) + ")"
    pieces = []
    # with one capturing group, re.split alternates text, special, text, special, ..., text
    for i, piece in enumerate(regex.split(pattern, text)):
        if piece:
            pieces.append((piece, i % 2 == 1))
    return pieces


def pretokenize_bytes(text: str, special_tokens: list[str]) -> list[str]:
    table = bytes_to_unicode()
    out = []
    for piece, is_special in split_special_tokens(text, special_tokens):
        if is_special:
            out.append(piece)
            continue
        for word in pretokenize(piece):
            out.append("".join(table[b] for b in word.encode("utf-8")))
    return out
