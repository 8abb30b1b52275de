"""Feeding a language model: random windows from a token file, and packing documents into rows.

Pretraining data is usually one long stream of token ids on disk: every document of the
corpus tokenized, each followed by an end-of-sequence token (EOS), and everything written one
after another as a flat binary file, e.g. `np.array(ids, dtype=np.uint16).tofile(path)`
(uint16 holds ids up to 65535, enough for GPT-2's 50257; larger vocabularies use uint32 or
int32). The file can be bigger than memory, so it is opened as a numpy memory map: the
operating system reads only the pages that are touched.

Two ways to cut the stream into training examples:

- `get_batch`: random windows (nanoGPT-style). Each example is context_length + 1
  consecutive tokens starting at a random position: x is the first context_length of them,
  y the last context_length, so y[b, t] = x[b, t + 1] and y[b, t] is the target of
  position t.
- `pack_documents`: consecutive, non-overlapping rows of the EOS-separated stream, each
  context_length + 1 tokens long (x = rows[:, :-1], y = rows[:, 1:]). Packing wastes no
  compute on padding. A row may hold the end of one document and the start of the next;
  `document_position_ids` restarts the position ids at each document so a model can tell
  where documents begin.

All token ids returned are int64 (torch.long), what nn.Embedding and F.cross_entropy take.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def load_tokens(path: str, dtype: str = "uint16") -> np.memmap:
    """The token file at `path` as a read-only, 1-D numpy memory map.

    The file is a flat array of token ids of type `dtype` ("uint16", "int32", "uint32", ...)
    in the machine's native byte order, with no header: exactly what
    `np.array(ids, dtype=dtype).tofile(path)` writes. The file is not empty.

    Return `np.memmap(path, dtype=dtype, mode="r")`: a numpy.memmap (not an array read
    into memory with np.fromfile or np.load), of that dtype and of shape (number of tokens,),
    that cannot be written to. Mind np.memmap's default mode, "r+": it opens the file for
    writing, so a stray assignment would change the training data on disk.
    """
    raise NotImplementedError


def get_batch(
    data: np.ndarray, batch_size: int, context_length: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows of `data`: inputs x and next-token targets y.

    - `data`: a 1-D numpy array of token ids of any integer dtype (uint16, int32, int64, ...),
      often the np.memmap from `load_tokens`. Let N = len(data).
    - `batch_size` >= 1 and `context_length` >= 1 are ints; `seed` is an int.

    Start indices: every valid start s = 0, 1, ..., N - context_length - 1 (the last one's
    window of context_length + 1 tokens ends exactly at data[N - 1]) is equally likely.
    Draw them exactly like this, so that the same seed always gives the same batch:

        generator = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, N - context_length, (batch_size,), generator=generator)

    (torch.randint's upper bound is exclusive.) Use this fresh generator only: do not seed,
    draw from or otherwise change torch's global random state (torch.manual_seed, a
    randint without `generator=`), which the training loop's dropout and init depend on.

    Returns (x, y), two int64 CPU tensors of shape (batch_size, context_length) with, for
    each b and s = starts[b],

        x[b] = data[s     : s + context_length]
        y[b] = data[s + 1 : s + 1 + context_length]

    so y is x shifted left by one token: y[b, t] = x[b, t + 1], and y[b, -1] is the token
    after x's window. Values are the token ids themselves, whatever data's dtype: convert to
    int64 (e.g. `.astype(np.int64)`) and never through a narrower type such as int16 (uint16
    ids above 32767 would wrap around to negative numbers). Slice the windows first and
    convert only them: converting all of a memmapped `data` would read the whole file.

    Raises ValueError when N <= context_length: then no window of context_length + 1
    tokens fits.
    """
    raise NotImplementedError


def pack_documents(documents: Sequence[Sequence[int]], eos_id: int, context_length: int) -> torch.Tensor:
    """Pack tokenized documents into rows of context_length + 1 tokens, separated by EOS.

    - `documents`: a list of documents, each a list of token ids (ints), possibly empty.
    - `eos_id`: the end-of-sequence token id; `context_length` >= 1.

    1. The stream: for each document in order, its tokens followed by ONE `eos_id`, the last
       document included (an EOS closes a document, it does not go before one). An EMPTY
       document is skipped: it adds nothing to the stream, not even an EOS. A document's own
       tokens are copied as they are, even if some equal eos_id.
    2. The rows: the stream cut into consecutive, non-overlapping pieces of exactly
       context_length + 1 tokens: row i is stream[i * (context_length + 1) : (i + 1) *
       (context_length + 1)]. A document longer than a row simply continues in the next row(s).
    3. The remainder: the last len(stream) % (context_length + 1) tokens, too few for a whole
       row, are DROPPED. Nothing is ever padded.

    Returns an int64 tensor of shape (n_rows, context_length + 1) with
    n_rows = len(stream) // (context_length + 1); n_rows may be 0 (shape (0, context_length + 1)).
    A model trains on x = rows[:, :-1] and y = rows[:, 1:].
    """
    raise NotImplementedError


def document_position_ids(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Position ids that restart at 0 at the start of every document, row by row.

    `tokens` is an int64 tensor of shape (n_rows, T), T >= 1, e.g. x = rows[:, :-1] from
    `pack_documents`; n_rows may be 0. Each row is handled on its own, as a model sees it:

        pos[r, 0] = 0                                  (a row starts at 0, even in mid-document)
        pos[r, t] = 0                if tokens[r, t - 1] == eos_id   (the token after an EOS
                                                                   starts a new document)
        pos[r, t] = pos[r, t - 1] + 1  otherwise

    So an EOS belongs to the document it ends and takes the next position after that
    document's last token; two EOS in a row give positions k, 0. Example with eos_id = 0:
    tokens [[5, 6, 0, 7, 0, 0, 8]] give [[0, 1, 2, 0, 1, 0, 0]].

    Returns an int64 tensor of the same shape as `tokens`. `tokens` is not modified.
    """
    raise NotImplementedError
