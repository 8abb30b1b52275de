"""Checks for alignment.sft_data: chat-template tokens and SFT labels, judged by the judge's own
construction, by transformers' assistant-token mask, and by a few SFT steps the judge runs.

The tokenizer is a word-level `PreTrainedTokenizerFast` built in memory (tokenizers' WordLevel
over the synthetic language's words plus chat special tokens), with a jinja2 `chat_template`.
The judge saves it to `shared_dir` and the solution process loads it with
`PreTrainedTokenizerFast.from_pretrained(path)` (a probe program, so the student's functions receive a
real tokenizer: only data crosses the sandbox's wire). Three templates:

- "plain": `<|bos|>` then `<|role|>content<|end|>` per message, generation prompt `<|assistant|>`;
- "marked": the same text, with the assistant's content and end token inside
  `{% generation %}`, so transformers' `apply_chat_template(..., return_assistant_tokens_mask=
  True)` gives the library's own answer (the parity check);
- "chatml" (hidden): `<|im_start|>role content<|im_end|>`, a two-token header, no BOS and a
  default system prompt when the conversation has none.

The expected ids and labels are built by the judge token by token from the messages (the
template's structure is known), never by the reference's prefix method.

The judged run: the student's `tokenize_conversation` and `collate` build a batch, and the
judge trains its own tiny LlamaForCausalLM on it with `model(..., labels=labels).loss`. It
measures which logits get a gradient (those predicting a token the judge knows to be an
assistant token, and no other: prompt and padding positions carry none) and that the
assistant-token loss, measured with the judge's own mask, falls.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch

from grader import probes
from grader.checks import one_torch_thread
from grader.compare import check, raises
from grader.synthlang import SyntheticLanguage

LANGUAGE = SyntheticLanguage(seed=0)
SPECIALS = ["<|pad|>", "<|unk|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>",
            "<|im_start|>", "<|im_end|>"]
WORDS = [t for t in LANGUAGE.tokens if t != "\n"]  # the synthetic language's words and punctuation
ROLES = ["system", "user", "assistant"]  # ChatML writes the role as a word
VOCAB = {t: i for i, t in enumerate([*SPECIALS, *ROLES, *(w for w in WORDS if w not in ROLES)])}
PAD, END, IM_END = VOCAB["<|pad|>"], VOCAB["<|end|>"], VOCAB["<|im_end|>"]
DEFAULT_SYSTEM = " ".join(WORDS[40:46])

PLAIN = ("{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + '<|end|>' }}{% endfor %}"
         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
MARKED = ("{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>' }}{% if m['role'] == 'assistant' %}"
          "{% generation %}{{ m['content'] + '<|end|>' }}{% endgeneration %}{% else %}{{ m['content'] + '<|end|>' }}"
          "{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
CHATML = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system " + DEFAULT_SYSTEM + "<|im_end|>{% endif %}"
          "{% for m in messages %}{{ '<|im_start|>' + m['role'] + ' ' + m['content'] + '<|im_end|>' }}{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")
TEMPLATES = {"plain": PLAIN, "marked": MARKED, "chatml": CHATML}


@functools.cache
def hf_tokenizer(style: str) -> Any:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel(VOCAB, unk_token="<|unk|>"))
    backend.pre_tokenizer = WhitespaceSplit()
    eos = "<|im_end|>" if style == "chatml" else "<|end|>"
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|bos|>", eos_token=eos, pad_token="<|pad|>",
                                  unk_token="<|unk|>", additional_special_tokens=SPECIALS[4:])
    tok.chat_template = TEMPLATES[style]
    return tok


def saved(shared_dir: Path, style: str) -> str:
    """The tokenizer saved where the solution process can load it from."""
    path = shared_dir / f"tokenizer-{style}"
    if not path.exists():
        hf_tokenizer(style).save_pretrained(str(path))
    return str(path)


def tokenizer_in(module: Any, path: str) -> Any:
    """`PreTrainedTokenizerFast.from_pretrained(path)`, made where `module` runs (its process, or here)."""
    program = [["import", "transformers"], ["getattr", 0, "PreTrainedTokenizerFast"],
               ["method", 1, "from_pretrained", [["val", path]]]]
    return probes.run_program(module, program, [2])[0]


def text(rng: Any, n: int) -> str:
    """n words of the synthetic language (document boundaries left out), space-separated."""
    ids = LANGUAGE.sample(4 * n + 16, seed=int(rng.randint(0, 2**31 - 1, (1,))))
    words = [w for w in (LANGUAGE.tokens[i] for i in ids) if w != "\n"]
    assert len(words) >= n
    return " ".join(words[:n])


def conversation(rng: Any, turns: list[tuple[str, int]]) -> list[dict[str, str]]:
    return [{"role": role, "content": text(rng, n)} for role, n in turns]


def expected(messages: list[dict[str, str]], style: str) -> dict[str, torch.Tensor]:
    """The ids and labels written out token by token from the template's structure."""
    ids: list[int] = []
    labels: list[int] = []

    def add(tokens: list[str], trained: bool) -> None:
        for t in tokens:
            ids.append(VOCAB[t])
            labels.append(VOCAB[t] if trained else -100)

    if style == "chatml":
        if messages[0]["role"] != "system":
            add(["<|im_start|>", "system", *DEFAULT_SYSTEM.split(), "<|im_end|>"], False)
        for m in messages:
            add(["<|im_start|>", m["role"]], False)
            add([*m["content"].split(), "<|im_end|>"], m["role"] == "assistant")
    else:
        add(["<|bos|>"], False)
        for m in messages:
            add([f"<|{m['role']}|>"], False)
            add([*m["content"].split(), "<|end|>"], m["role"] == "assistant")
    return {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}


def padded(examples: list[dict[str, torch.Tensor]], pad: int, side: str = "right") -> dict[str, torch.Tensor]:
    """The batch written out row by row."""
    T = max(len(e["input_ids"]) for e in examples)
    rows: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for e in examples:
        n = len(e["input_ids"])
        fill = T - n
        for key, own, filler in (("input_ids", e["input_ids"].tolist(), pad), ("attention_mask", [1] * n, 0),
                                 ("labels", e["labels"].tolist(), -100)):
            rows[key].append(own + [filler] * fill if side == "right" else [filler] * fill + own)
    return {k: torch.tensor(v, dtype=torch.long) for k, v in rows.items()}


def roles(messages: list[dict[str, str]]) -> str:
    return " + ".join(m["role"] for m in messages)


def check_conversations(expect: Any, shared_dir: Path, style: str, convs: list[list[dict[str, str]]],
                        what: str) -> None:
    path = saved(shared_dir, style)
    for msgs in convs:
        expect(lambda s, msgs=msgs: s.tokenize_conversation(tokenizer_in(s, path), msgs), truth=expected(msgs, style),
               name=f"tokenize_conversation({style} template, {what}: {roles(msgs)})")


@pytest.mark.points(2)
def test_single_turn(expect, rng, shared_dir):
    # the prompt (BOS, system, user, the assistant header) is -100; the answer and its <|end|> are trained
    convs = [conversation(rng, [("system", 4), ("user", 6), ("assistant", 5)]),
             conversation(rng, [("user", 3), ("assistant", 7)]),
             conversation(rng, [("user", 5), ("assistant", 1)])]
    check_conversations(expect, shared_dir, "plain", convs, "one assistant turn")


@pytest.mark.points(2)
def test_every_assistant_turn_is_trained(expect, rng, shared_dir):
    convs = [conversation(rng, [("system", 3), ("user", 4), ("assistant", 5), ("user", 2), ("assistant", 3),
                                ("user", 6), ("assistant", 4)]),
             conversation(rng, [("user", 2), ("assistant", 3), ("assistant", 2), ("user", 4), ("assistant", 6)])]
    check_conversations(expect, shared_dir, "plain", convs, "several assistant turns")


@pytest.mark.points(2)
def test_matches_transformers_assistant_mask(expect, rng, shared_dir):
    """Parity with transformers: a template marking the assistant's part with {% generation %}
    lets `apply_chat_template(..., return_assistant_tokens_mask=True)` say which tokens are the
    assistant's; the labels must be the ids there and -100 elsewhere."""
    tok = hf_tokenizer("marked")
    path = saved(shared_dir, "marked")
    convs = [conversation(rng, [("system", 5), ("user", 3), ("assistant", 6), ("user", 4), ("assistant", 2)]),
             conversation(rng, [("user", 7), ("assistant", 4)])]
    for msgs in convs:
        out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids = torch.tensor(out["input_ids"], dtype=torch.long)
        mask = torch.tensor(out["assistant_masks"], dtype=torch.bool)
        truth = {"input_ids": ids, "labels": ids.masked_fill(~mask, -100)}
        expect(lambda s, msgs=msgs: s.tokenize_conversation(tokenizer_in(s, path), msgs), truth=truth,
               name=f"tokenize_conversation(a template with {{% generation %}} blocks, {roles(msgs)}) vs transformers'"
                    " apply_chat_template(return_assistant_tokens_mask=True): labels = ids where assistant_masks is 1")


@pytest.mark.points(2)
def test_collate_pads_by_position(expect, rng, shared_dir):
    convs = [conversation(rng, turns) for turns in ([("user", 3), ("assistant", 2)],
                                                    [("system", 2), ("user", 5), ("assistant", 6)],
                                                    [("user", 1), ("assistant", 1)])]
    examples = [expected(m, "plain") for m in convs]
    lengths = [len(e["input_ids"]) for e in examples]
    for pad, side, what in ((PAD, "right", "pad_token_id=<|pad|>"), (PAD, "left", "pad_token_id=<|pad|>"),
                            (END, "right", "pad_token_id = the end-of-turn token <|end|>, which is trained")):
        expect(lambda s, pad=pad, side=side: s.collate(examples, pad, padding_side=side),
               truth=padded(examples, pad, side),
               name=f"collate(examples of lengths {lengths}, {what}, padding_side={side!r})")
    as_lists = [{k: v.tolist() for k, v in e.items()} for e in examples]
    expect(lambda s: s.collate(as_lists, PAD), truth=padded(examples, PAD),
           name=f"collate(examples given as lists of ints, lengths {lengths}, pad_token_id=<|pad|>)")
    check(raises(lambda: expect.solution.collate(examples, PAD, padding_side="middle")),
          "collate(..., padding_side='middle') should raise ValueError: only 'right' and 'left' exist")


# --- the judged run -------------------------------------------------------------------------

STEPS, LR = 8, 1e-2


def new_model() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=PAD, bos_token_id=VOCAB["<|bos|>"], eos_token_id=END,
                         attn_implementation="eager")
    return LlamaForCausalLM(config).float()


def student_batch(module: Any, path: str, convs: list[list[dict[str, str]]]) -> Any:
    tok = tokenizer_in(module, path)
    return module.collate([module.tokenize_conversation(tok, m) for m in convs], PAD)


def trained_positions(batch: Any, what: str) -> torch.Tensor:
    """Which logits get a gradient from the model's own loss on `batch`: (B, T) bool, True at t
    when the logits at t are scored (HF scores them against labels[t + 1])."""
    check(isinstance(batch, dict) and {"input_ids", "attention_mask", "labels"} <= set(batch),
          f"{what}: collate must return a dict with input_ids, attention_mask and labels")
    shape = getattr(batch["input_ids"], "shape", None)
    for key in ("input_ids", "attention_mask", "labels"):
        t = batch[key]
        check(isinstance(t, torch.Tensor) and t.dtype == torch.long and t.dim() == 2 and t.shape == shape,
              f"{what}: {key} must be an int64 tensor (B, T) like input_ids, got "
              + (f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__))
    model = new_model()
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    loss = out.loss.detach()
    check(bool(torch.isfinite(loss)), f"{what}: the model's loss on your batch is {float(loss)}: no label is "
                                      "trained (every label -100?)")
    out.logits.retain_grad()
    out.loss.backward()
    return out.logits.grad.abs().amax(-1) > 0


def assistant_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """The judge's measure: the model's loss on the assistant tokens of `batch` (its own labels)."""
    with torch.no_grad():
        return float(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           labels=batch["labels"]).loss)


@pytest.mark.points(3)
def test_judged_sft_steps(expect, rng, shared_dir):
    """The judge trains a tiny LlamaForCausalLM on the batch the student's functions build."""
    path = saved(shared_dir, "plain")
    convs = [conversation(rng, [("system", 3), ("user", 4), ("assistant", 5), ("user", 3), ("assistant", 4)]),
             conversation(rng, [("user", 6), ("assistant", 3)]),
             conversation(rng, [("user", 2), ("assistant", 8), ("user", 2), ("assistant", 2)]),
             conversation(rng, [("system", 5), ("user", 3), ("assistant", 2)])]
    truth = padded([expected(m, "plain") for m in convs], PAD)
    what = (f"the batch of {len(convs)} conversations built by tokenize_conversation and collate(..., "
            "pad_token_id=<|pad|>), trained on by the judge's LlamaForCausalLM(input_ids, attention_mask, labels)")
    batch = student_batch(expect.solution, path, convs)
    with one_torch_thread():
        got = trained_positions(batch, what)
    # logits at t carry a gradient exactly when token t + 1 is an assistant token (content or its end)
    wanted = torch.zeros_like(truth["labels"], dtype=torch.bool)
    wanted[:, :-1] = truth["labels"][:, 1:] != -100
    expect.compare(got, wanted, lambda m: trained_positions(student_batch(m, path, convs), what),
                   name=f"{what}: which positions' logits get a gradient from the loss (True: the next token is one "
                        "of the assistant's; prompt, header and padding positions must carry none)")
    with one_torch_thread():
        model = new_model()
        before = assistant_loss(model, truth)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        for _ in range(STEPS):
            optimizer.zero_grad()
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  labels=batch["labels"]).loss.backward()
            optimizer.step()
        after = assistant_loss(model, truth)
    # the reference goes from about log(V) = 6.0 to 2.8 in 8 steps (labels on every token: 3.5); 0.8 leaves a wide margin
    check(after < 0.8 * before,
          f"{what}: after {STEPS} Adam steps (lr={LR:g}) on your batch the judge measured the loss on the assistant's "
          f"tokens at {after:.3f}, from {before:.3f}: it should fall below {0.8 * before:.3f}")


@pytest.mark.hidden
def test_hidden_chatml_template(expect, rng, shared_dir):
    """A template the public checks do not show: ChatML headers of two tokens (<|im_start|>
    and the role as a word), no BOS, a default system prompt when none is given, and pad ==
    eos == <|im_end|>; a conversation ending on a user turn (nothing trained), one assistant
    turn of a single word, and left padding in collate with a batch of one and of three."""
    path = saved(shared_dir, "chatml")
    convs = [conversation(rng, [("user", 4), ("assistant", 3), ("user", 2), ("assistant", 1)]),
             conversation(rng, [("system", 2), ("user", 5), ("assistant", 6)]),
             conversation(rng, [("system", 3), ("user", 4), ("assistant", 2), ("user", 3)]),
             conversation(rng, [("user", 3)])]
    check_conversations(expect, shared_dir, "chatml", convs, "two-token headers, a default system prompt")
    examples = [expected(m, "chatml") for m in convs]
    for chosen in ([examples[1]], examples[:3]):
        lengths = [len(e["input_ids"]) for e in chosen]
        expect(lambda s, chosen=chosen: s.collate(chosen, IM_END, padding_side="left"),
               truth=padded(chosen, IM_END, "left"),
               name=f"collate(examples of lengths {lengths}, pad_token_id = eos = <|im_end|>, padding_side='left')")
    # the full path with the student's own tokens, in the chatml template, for a batch
    expect(lambda s: s.collate([s.tokenize_conversation(tokenizer_in(s, path), m) for m in convs], IM_END),
           truth=padded(examples, IM_END),
           name="collate([tokenize_conversation(chatml tokenizer, m) for m in 4 conversations], pad = <|im_end|>)")
