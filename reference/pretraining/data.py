"""Random windows from a memory-mapped token file, and EOS-separated document packing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def load_tokens(path: str, dtype: str = "uint16") -> np.memmap:
    # mode="r": np.memmap's default "r+" would open the training data for writing.
    return np.memmap(path, dtype=np.dtype(dtype), mode="r")


def get_batch(
    data: np.ndarray, batch_size: int, context_length: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(data)
    if n <= context_length:
        raise ValueError(
            f"data has {n} tokens: a window needs context_length + 1 = {context_length + 1} of them"
        )
    generator = torch.Generator().manual_seed(seed)
    # The upper bound is exclusive: starts 0 .. n - context_length - 1, and the last one's
    # target window ends exactly at data[n - 1].
    starts = torch.randint(0, n - context_length, (batch_size,), generator=generator).tolist()
    # Slice first, then convert only the windows to int64 (uint16 ids above 32767 must not
    # wrap, and converting a whole memmap would read the whole file).
    x = np.stack([data[s : s + context_length] for s in starts]).astype(np.int64)
    y = np.stack([data[s + 1 : s + 1 + context_length] for s in starts]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def pack_documents(documents: Sequence[Sequence[int]], eos_id: int, context_length: int) -> torch.Tensor:
    row = context_length + 1
    stream: list[int] = []
    for doc in documents:
        if len(doc) == 0:
            continue  # an empty document adds nothing, not even an EOS
        stream.extend(int(t) for t in doc)
        stream.append(int(eos_id))  # the EOS closes the document, the last one's too
    n_rows = len(stream) // row  # the remainder, shorter than a row, is dropped
    return torch.tensor(stream[: n_rows * row], dtype=torch.int64).reshape(n_rows, row)


def document_position_ids(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    n_rows, length = tokens.shape
    index = torch.arange(length).expand(n_rows, length)
    # A document starts at t = 0 of every row and right after every EOS.
    starts = torch.zeros(n_rows, length, dtype=torch.bool)
    starts[:, 0] = True
    starts[:, 1:] = tokens[:, :-1] == eos_id
    # The start of the document that position t is in: the latest start at or before t.
    doc_start = torch.where(starts, index, 0).cummax(dim=1).values
    return (index - doc_start).to(torch.int64)
