"""Checks for alignment.dpo: the DPO and IPO losses against the papers' formulas, and a few
DPO steps judged by what the returned weights do.

Ground truth. trl is not a dependency (it pulls datasets, pandas and pyarrow, and its DPO loss
lives inside DPOTrainer), so the losses are judged against the papers' formulas written out
here in float64, with TRL's conventions:

- DPO (Rafailov et al. 2023, eq. 7). For a prompt x with a chosen response y_w and a rejected
  one y_l, the policy's log-likelihood of a response is log pi(y | x) = sum over the response's
  tokens of log pi(y_t | x, y_<t): a SUM (TRL's default; its per-token average is reserved for
  IPO). With the reference model's log-likelihoods r,
      h = (log pi(y_w|x) - r(y_w|x)) - (log pi(y_l|x) - r(y_l|x)),
      loss = mean over pairs of -log sigmoid(beta * h).
  Derivation: the KL-regularised objective max_pi E_pi[r(x, y)] - beta KL(pi(.|x) || pi_ref(.|x))
  has the optimum pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x), so any reward can be
  written through its optimal policy, r(x, y) = beta log(pi*(y|x) / pi_ref(y|x)) + beta log Z(x).
  Under the Bradley-Terry model p(y_w > y_l | x) = sigmoid(r(x, y_w) - r(x, y_l)) the partition
  function Z(x) cancels in the difference, leaving p = sigmoid(beta * h) with pi in place of pi*;
  the DPO loss is that preference's negative log-likelihood, averaged over the pairs.
  The implicit rewards reported are beta * (policy - reference) log-likelihoods, beta INCLUDED,
  detached (TRL's chosen_rewards / rejected_rewards). Properties the checks use: h = 0 gives
  loss log 2 and rewards 0; d loss / d h = -beta * sigmoid(-beta * h) / N, so as beta -> 0 the
  loss is log 2 - beta * mean(h) / 2 + O(beta^2), and for large beta * |h| it is
  max(0, -beta * h) + log(1 + exp(-beta * |h|)): finite, never log(0).
- IPO (Azar et al. 2023, eq. 17): loss = mean over pairs of (h - 1 / (2 * beta))^2. IPO keeps
  the preference probability itself (the identity mapping, not Bradley-Terry's logit) in the
  KL-regularised objective; its optimum has h = (p(y_w > y_l) - 1/2) / tau, which eq. 17
  regresses onto from sampled preferences: for the observed order, h's target is 1 / (2 tau)
  (tau = beta). DPO's h grows without bound on preferences that always hold (sigmoid -> 1);
  IPO's is held at 1 / (2 beta). TRL's DPOTrainer, for
  loss_type="ipo", divides every log-likelihood (policy and reference) by its response's
  number of tokens before forming h (all_logps / loss_mask.sum(-1)); so does this exercise,
  and its rewards are beta times those per-token log-ratios. h = 0 gives 1 / (4 beta^2).
- Sequence log-probs from a causal LM's logits: logits[:, t] predicts input_ids[:, t + 1], so
  sum over t >= 1 of response_mask[:, t] * log_softmax(logits[:, t - 1])[input_ids[:, t]]. The
  library parity check: for one row, that sum is -(HF's causal-LM loss with the labels of
  non-response tokens set to -100) * (number of response tokens after position 0).

Training. The judge pre-trains a tiny GPT-2 briefly on the synthetic language (so it knows the
grammar: the reference prefers a grammatical continuation to a corrupted one by ~18 nats on
average), builds preference pairs from the language (chosen = the chain's own continuation of a
prompt, rejected = the same continuation with two tokens replaced by random ones), and hands
the student the config, the reference's state as both the policy's start and the frozen
reference, and 64 pairs. It loads the RETURNED weights into its own GPT2LMHeadModel and
measures, on 128 held-out pairs, the implicit-reward margin (must rise from 0 to at least
MIN_MARGIN) and the mean per-token KL(policy || reference) on held-out chosen responses (must
stay under MAX_KL). Nothing the student reports is used. Plain SGD makes each update
proportional to the loss's gradient, so DPO's weighting shows: a loss without the reference sees
beta * 18 nats of margin already, sigmoid(-9) ~ 1e-4 of the gradient, and barely moves.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grader import probes
from grader.checks import load_returned_weights, one_torch_thread
from grader.compare import check, fail
from grader.synthlang import SyntheticLanguage

# float32 log-probs down to -40 (ulp 4e-6): a reward formed as beta * p - beta * r instead of
# beta * (p - r) differs by a few ulps of beta * 40, the loss by a few ulps of itself
TOL = {"atol": 1e-5, "rtol": 1e-5}
# IPO divides first: p / n - r / n and (p - r) / n differ by ulps of 40, squared against 1 / (2 beta)
IPO_TOL = {"atol": 2e-5, "rtol": 3e-5}
# summed log-probs of up to ~20 tokens with |log p| up to ~10: float32 sums carry ~1e-5
LOGP_TOL = {"atol": 1e-4, "rtol": 1e-5}

LANGUAGE = SyntheticLanguage(seed=0)
V = LANGUAGE.vocab_size
PAD = 0  # the document boundary; right padding, always outside the response mask
CONFIG = {
    "vocab_size": V, "n_positions": 32, "n_embd": 32, "n_layer": 1, "n_head": 2,
    "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "attn_implementation": "eager",
    "bos_token_id": PAD, "eos_token_id": PAD,
}
TRAIN = {"beta": 0.5, "lr": 0.1, "steps": 30}
# Measured on 128 held-out pairs after training on 64, over 30 seeds of the pairs: the reference
# reaches a margin of 0.93 to 1.54 (mean 1.2, sd ~0.15: MIN_MARGIN is 5 sd below, a false-failure
# rate under 1e-6 for a fresh seed) and a KL of 0.12 to 0.24 nats per token. A loss without the
# reference stays under 0.15, a flipped sign ends below -3.5, and a reference that moves with
# the policy ends with a KL of 1.1 to 6.4.
MIN_MARGIN = 0.4
MAX_KL = 0.5


# --- the truths, in float64 ---------------------------------------------------------------


def truth_sequence_logprobs(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Position by position: sum over t >= 1 with mask[b, t] of log_softmax(logits[b, t-1])[ids[b, t]]."""
    out_dtype = torch.promote_types(logits.dtype, torch.float32)
    logp = logits.double().log_softmax(-1)
    B, T = ids.shape
    out = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        for t in range(1, T):
            if mask[b, t]:
                out[b] += logp[b, t - 1, ids[b, t]]
    return out.to(out_dtype)


def hf_sequence_logprobs(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """transformers' own causal-LM loss, row by row: -(mean NLL over response tokens) * their count."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    out = []
    for b in range(len(ids)):
        labels = ids[b : b + 1].masked_fill(~mask[b : b + 1].bool(), -100)
        count = int(mask[b, 1:].bool().sum())
        loss = ForCausalLMLoss(logits[b : b + 1], labels, logits.size(-1)) if count else torch.tensor(0.0)
        out.append(-loss * count)
    return torch.stack(out).float()


def truth_dpo(pc, pr, rc, rr, beta):
    dtype = pc.dtype
    pc, pr, rc, rr = (x.double() for x in (pc, pr, rc, rr))
    h = (pc - rc) - (pr - rr)
    loss = -F.logsigmoid(beta * h).mean()
    return loss.to(dtype), (beta * (pc - rc)).to(dtype), (beta * (pr - rr)).to(dtype)


def truth_ipo(pc, pr, rc, rr, lc, lr, beta):
    dtype = pc.dtype
    pc, pr, rc, rr, lc, lr = (x.double() for x in (pc, pr, rc, rr, lc, lr))
    chosen, rejected = (pc - rc) / lc, (pr - rr) / lr
    loss = ((chosen - rejected - 1 / (2 * beta)) ** 2).mean()
    return loss.to(dtype), (beta * chosen).to(dtype), (beta * rejected).to(dtype)


def logps(rng: Any, n: int, *, scale: float = 3.0) -> tuple[torch.Tensor, ...]:
    """Summed log-probs of n pairs (-40 to -5 nats), the reference within a few nats of the policy."""
    pc = -5.0 - 35.0 * rng.rand(n)
    pr = -5.0 - 35.0 * rng.rand(n)
    return pc, pr, pc + rng.randn(n, scale=scale), pr + rng.randn(n, scale=scale)


def loss_gradients(module: Any, name: str, tensors: list[torch.Tensor], *rest: Any) -> list[Any]:
    """d loss / d (each of `tensors`) for module.<name>(*tensors, *rest)[0], backpropagated where
    the module's code runs (the student's process in isolated mode). Returns [loss, grads...],
    or [loss] alone when the loss is cut off from the inputs (no backward possible)."""
    n = len(tensors)
    program: list[Any] = []
    for x in tensors:
        program.append(["const", x.detach().clone()])
    for i in range(n):
        program.append(["method", i, "requires_grad_", [["val", True]]])
    args = [["reg", n + i] for i in range(n)] + [["val", v] for v in rest]
    program.append(["call", name, args])
    program.append(["method", 2 * n, "__getitem__", [["val", 0]]])
    loss, attached = probes.run_program(module, program, [2 * n + 1, [2 * n + 1, "requires_grad"]])
    if not attached:
        return [loss]
    program.append(["method", 2 * n + 1, "backward", []])
    return probes.run_program(module, program, [2 * n + 1] + [[n + i, "grad"] for i in range(n)])


def truth_gradients(fn: Any, tensors: list[torch.Tensor], *rest: Any) -> list[Any]:
    leaves = [x.detach().double().requires_grad_(True) for x in tensors]
    loss = fn(*leaves, *rest)[0]
    loss.backward()
    return [loss.detach().to(tensors[0].dtype)] + [x.grad.to(tensors[0].dtype) for x in leaves]


# --- sequence log-probs ---------------------------------------------------------------------


@functools.cache
def tiny_lm(kind: str) -> torch.nn.Module:
    """A tiny random causal LM; initializer_range 0.3 so per-token log-probs differ widely."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    common = {"vocab_size": 53, "initializer_range": 0.3, "bos_token_id": 1, "eos_token_id": 1,
              "pad_token_id": PAD, "attn_implementation": "eager"}
    torch.manual_seed(4321)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                                           embd_pdrop=0.0, attn_pdrop=0.0, **common))
    else:
        model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=32, **common))
    return model.float().eval()


def prompt_response_batch(rng: Any, prompt_lens: list[int], response_lens: list[int], T: int,
                          vocab: int = 53) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T) = prompt + response + right padding (PAD); the response mask marks the response."""
    B = len(prompt_lens)
    ids = rng.randint(2, vocab, (B, T))
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, (p, r) in enumerate(zip(prompt_lens, response_lens)):
        mask[b, p : p + r] = 1
        ids[b, p + r :] = PAD
    return ids, mask


@pytest.mark.points(3)
def test_sequence_logprobs_match_hf_loss(expect, rng):
    for kind, model_name in (("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")):
        r = rng.child(kind)
        # prompts of 3 to 7 tokens, responses of 1 to 9, right padding up to T = 15
        ids, mask = prompt_response_batch(r, [4, 3, 7, 5], [9, 1, 6, 3], T=15)
        with torch.no_grad():
            logits = tiny_lm(kind)(ids).logits
        what = f"sequence_logprobs({model_name} logits (4, 15, 53), prompt + response + right padding)"
        expect(lambda s, x=logits, i=ids, m=mask: s.sequence_logprobs(x, i, m),
               truth=hf_sequence_logprobs(logits, ids, mask), **LOGP_TOL,
               name=f"{what} vs -(HF causal-LM loss over the response tokens) * their count")
        expect(lambda s, x=logits, i=ids, m=mask: s.sequence_logprobs(x, i, m),
               truth=truth_sequence_logprobs(logits, ids, mask), **LOGP_TOL,
               name=f"{what} vs the float64 sum written out position by position")


@pytest.mark.points(2)
def test_sequence_logprobs_edge_cases(expect, rng):
    logits = rng.randn(4, 8, 17, scale=2.0)
    ids, mask = prompt_response_batch(rng, [0, 3, 2, 1], [5, 5, 0, 7], T=8, vocab=17)
    # row 0: the mask includes position 0, which nothing predicts (ignored); row 2: no response (0)
    for m, what in ((mask, "int64"), (mask.bool(), "bool"), (mask.float(), "float32")):
        expect(lambda s, m=m: s.sequence_logprobs(logits, ids, m), truth=truth_sequence_logprobs(logits, ids, m),
               **LOGP_TOL, name=f"sequence_logprobs(logits (4, 8, 17), a {what} mask: row 0's mask starts at "
                                "position 0, which is never predicted; row 2 has no response token -> 0)")
    # bfloat16 logits: upcast to float32 before the log-softmax, a float32 result
    half = rng.randn(3, 9, 31, scale=4.0).to(torch.bfloat16)
    half_ids, half_mask = prompt_response_batch(rng, [2, 4, 1], [6, 3, 8], T=9, vocab=31)
    expect(lambda s: s.sequence_logprobs(half, half_ids, half_mask),
           truth=truth_sequence_logprobs(half, half_ids, half_mask),
           **LOGP_TOL, name="sequence_logprobs(bfloat16 logits (3, 9, 31)) (float32 expected)")
    # logits spread over hundreds: softmax underflows to 0 for most tokens, so log(softmax) is -inf
    wide = rng.randn(2, 6, 11, scale=300.0)
    wide_ids, wide_mask = prompt_response_batch(rng, [1, 2], [5, 3], T=6, vocab=11)
    expect(lambda s: s.sequence_logprobs(wide, wide_ids, wide_mask),
           truth=truth_sequence_logprobs(wide, wide_ids, wide_mask),
           atol=1e-2, rtol=1e-5, name="sequence_logprobs(float32 logits ~ N(0, 300^2)): finite, thousands of nats")


def test_sequence_logprobs_gradient(expect, rng):
    logits = rng.randn(3, 7, 13, dtype=torch.float64, scale=2.0)
    ids, mask = prompt_response_batch(rng, [2, 1, 3], [4, 6, 2], T=7, vocab=13)
    expect.gradients(lambda s: s.sequence_logprobs, [logits, ids, mask], truth=truth_sequence_logprobs,
                     atol=1e-10, rtol=1e-9,
                     name="sequence_logprobs(float64 logits (3, 7, 13), ids, mask) under autograd (input 0 is "
                          "the logits; a float64 result)")


# --- the DPO loss ----------------------------------------------------------------------------


@pytest.mark.points(3)
def test_dpo_loss_and_rewards(expect, rng):
    pc, pr, rc, rr = logps(rng, 9)
    for beta in (0.1, 0.5):
        expect(lambda s, b=beta: s.dpo_loss(pc, pr, rc, rr, beta=b), truth=truth_dpo(pc, pr, rc, rr, beta), **TOL,
               name=f"dpo_loss(9 pairs of summed log-probs, beta={beta}) -> (loss, chosen_rewards, rejected_rewards)"
                    " vs the DPO paper's -log sigmoid(beta * h) averaged over pairs, rewards beta * (policy - "
                    "reference)")


@pytest.mark.points(2)
def test_dpo_loss_edge_cases(expect, rng):
    # equal log-probs everywhere (h = 0): the loss is log 2 whatever beta, the rewards 0
    pc, pr, _, _ = logps(rng, 5)
    expect(lambda s: s.dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1), truth=truth_dpo(pc, pr, pc, pr, 0.1),
           **TOL, name="dpo_loss(policy log-probs == reference log-probs, beta=0.1): loss log 2 = 0.693147, rewards 0")
    # a single pair; beta = 1e-3 (the loss is within 1e-2 of log 2)
    one = logps(rng.child("one"), 1)
    expect(lambda s: s.dpo_loss(*one, beta=1e-3), truth=truth_dpo(*one, 1e-3), **TOL,
           name="dpo_loss(1 pair, beta=1e-3)")
    # large beta * |h| (up to ~1000): -log sigmoid must stay finite, about beta * |h| for h < 0
    large = logps(rng.child("large"), 7, scale=20.0)
    expect(lambda s: s.dpo_loss(*large, beta=20.0), truth=truth_dpo(*large, 20.0), **TOL,
           name="dpo_loss(7 pairs with |h| up to ~60, beta=20): beta * h reaches -1000; the loss is finite")


def test_dpo_loss_gradient(expect, rng):
    pc, pr, rc, rr = logps(rng, 6)
    tensors = [pc, pr, rc, rr]
    got = loss_gradients(expect.solution, "dpo_loss", tensors, 0.3)
    check(len(got) > 1, "dpo_loss(6 pairs, beta=0.3): the loss returned does not require grad, so nothing can be "
                        "trained with it: build it from differentiable torch operations on the log-probs (no .item(), "
                        "no .detach(), no torch.tensor(...) around a computed value)")
    want = truth_gradients(truth_dpo, tensors, 0.3)
    names = ["the loss", "d loss / d policy_chosen_logps", "d loss / d policy_rejected_logps",
             "d loss / d reference_chosen_logps", "d loss / d reference_rejected_logps"]
    for i, (g, w) in enumerate(zip(got, want)):
        check(g is not None, f"dpo_loss(6 pairs, beta=0.3): no gradient reached {names[i].split(' / d ')[-1]}: build "
                             "the loss from differentiable torch operations on every log-prob")
        expect.compare(g, w, lambda m, i=i: loss_gradients(m, "dpo_loss", tensors, 0.3)[i], **TOL,
                       name=f"dpo_loss(6 pairs, beta=0.3) under autograd: {names[i]} (-beta * sigmoid(-beta * h)"
                            " / N for the policy's chosen log-probs)")


# --- the IPO loss ----------------------------------------------------------------------------


@pytest.mark.points(2)
def test_ipo_loss(expect, rng):
    pc, pr, rc, rr = logps(rng, 8)
    lc = rng.randint(1, 25, (8,))
    lr = rng.randint(1, 25, (8,))
    for beta in (0.1, 0.5):
        expect(lambda s, b=beta: s.ipo_loss(pc, pr, rc, rr, lc, lr, beta=b), truth=truth_ipo(pc, pr, rc, rr, lc, lr, beta),
               **IPO_TOL, name=f"ipo_loss(8 pairs, responses of 1 to 24 tokens, beta={beta}) -> (loss, chosen_rewards, "
                           "rejected_rewards) vs the IPO paper's (h - 1/(2 beta))^2 with per-token log-ratios (TRL)")
    # h = 0: the loss is 1 / (4 beta^2); a small beta makes it large, a large one small
    for beta in (0.01, 10.0):
        expect(lambda s, b=beta: s.ipo_loss(pc, pr, pc.clone(), pr.clone(), lc, lr, beta=b),
               truth=truth_ipo(pc, pr, pc, pr, lc, lr, beta), **IPO_TOL,
               name=f"ipo_loss(policy == reference, beta={beta}): loss 1/(4 beta^2) = {1 / (4 * beta**2):g}, rewards 0")
    # float lengths and a single pair
    one = logps(rng.child("one"), 1)
    lengths = torch.tensor([7.0]), torch.tensor([3.0])
    expect(lambda s: s.ipo_loss(*one, *lengths, beta=0.2), truth=truth_ipo(*one, *lengths, 0.2), **IPO_TOL,
           name="ipo_loss(1 pair, float lengths 7 and 3, beta=0.2)")


# --- training: the judge measures the returned weights -----------------------------------------


def new_model() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(**CONFIG))


@functools.cache
def reference_state() -> dict[str, torch.Tensor]:
    """A tiny GPT-2 pre-trained briefly on the synthetic language (60 AdamW steps, about half a
    second on one thread): it knows the grammar well enough to prefer a grammatical continuation
    to a corrupted one by ~18 nats on average (2% of pairs by under 3 nats)."""
    torch.manual_seed(0)
    model = new_model()
    batches = torch.from_numpy(LANGUAGE.sample(60 * 32 * 17, seed=5)).view(60, 32, 17)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    with one_torch_thread():
        for batch in batches:
            logits = model(input_ids=batch[:, :-1]).logits
            loss = F.cross_entropy(logits.reshape(-1, V), batch[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def preference_pairs(n: int, seed: int, *, prompt_len: int = 6, lengths: tuple[int, int] = (4, 8),
                     extra_rejected_padding: int = 0) -> dict[str, torch.Tensor]:
    """n pairs, each a prompt of `prompt_len` tokens of the language with two responses of the
    same length (drawn from `lengths`, inclusive): chosen = the chain's own continuation,
    rejected = that continuation with two of its tokens replaced by other, random ones (almost
    always an impossible transition of the grammar). Right padding with PAD, the rejected
    tensors `extra_rejected_padding` columns wider."""
    g = np.random.default_rng([seed, 0xD90])
    width = prompt_len + lengths[1]
    out = {key: torch.full((n, width + (extra_rejected_padding if key.startswith("rejected") else 0)),
                           PAD if key.endswith("ids") else 0, dtype=torch.long)
           for key in ("chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask")}
    for i in range(n):
        length = int(g.integers(lengths[0], lengths[1] + 1))
        seq = LANGUAGE.sample(prompt_len + length, seed=int(g.integers(2**31)))
        bad = seq.copy()
        for p in g.choice(np.arange(prompt_len, prompt_len + length), size=2, replace=False):
            bad[p] = (bad[p] + g.integers(1, V)) % V
        end = prompt_len + length
        out["chosen_ids"][i, :end] = torch.from_numpy(seq)
        out["rejected_ids"][i, :end] = torch.from_numpy(bad)
        out["chosen_mask"][i, prompt_len:end] = 1
        out["rejected_mask"][i, prompt_len:end] = 1
    return out


def load(state: Any, what: str) -> torch.nn.Module:
    """The judge's own GPT2LMHeadModel with the returned weights, or a failed check saying why."""
    return load_returned_weights(new_model(), state, what, returned="the returned value",
                                 how="return policy.state_dict() of the trained policy")


def pair_logprobs(model: torch.nn.Module, pairs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return tuple(truth_sequence_logprobs(model(input_ids=pairs[f"{s}_ids"]).logits, pairs[f"{s}_ids"],
                                             pairs[f"{s}_mask"]).double() for s in ("chosen", "rejected"))


def measure(policy: torch.nn.Module, reference: torch.nn.Module, pairs: dict[str, torch.Tensor],
            beta: float) -> tuple[float, float, float]:
    """(mean implicit-reward margin, share of pairs with a positive margin, mean per-token
    KL(policy || reference) over the chosen responses' tokens), all on `pairs`."""
    pc, pr = pair_logprobs(policy, pairs)
    rc, rr = pair_logprobs(reference, pairs)
    margins = beta * ((pc - rc) - (pr - rr))
    with torch.no_grad():
        ids = pairs["chosen_ids"]
        logp = policy(input_ids=ids).logits[:, :-1].double().log_softmax(-1)
        logq = reference(input_ids=ids).logits[:, :-1].double().log_softmax(-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)  # at each position predicting a response token
    scored = pairs["chosen_mask"][:, 1:].bool()
    return margins.mean().item(), (margins > 0).double().mean().item(), kl[scored].mean().item()


def judge_training(expect: Any, pairs: dict[str, torch.Tensor], held_out: dict[str, torch.Tensor],
                   beta: float, lr: float, steps: int) -> None:
    start = reference_state()
    n = len(pairs["chosen_ids"])
    what = f"train_dpo({n} pairs, beta={beta:g}, lr={lr:g}, steps={steps})"
    frozen = {k: v.clone() for k, v in start.items()}
    with one_torch_thread(expect.solution):
        state = expect.solution.train_dpo(CONFIG, start, frozen, pairs, beta=beta, lr=lr, steps=steps)
    policy = load(state, what)
    check(any(not torch.equal(state[k].float(), v) for k, v in start.items()),
          f"{what}: the returned weights are the initial weights: return the trained policy's state_dict(), taken "
          "after the loop (not the policy_state you were given, nor a copy taken before the loop)")
    reference = load(start, "the reference")
    with one_torch_thread():
        margin, accuracy, kl = measure(policy, reference, held_out, beta)
    if margin >= MIN_MARGIN and kl <= MAX_KL:
        return
    advice = []
    if margin < 0:
        advice.append("The margin went DOWN: the loss pushes the rejected responses up; DPO's loss is "
                      "-log sigmoid(+beta * h), h = chosen log-ratio - rejected log-ratio.")
    elif margin < MIN_MARGIN:
        advice.append("The margin barely rose: check that h subtracts the reference's log-ratios (the reference "
                      "already prefers the chosen responses by ~18 nats, so a loss without it is nearly flat) and "
                      "that every step updates the policy.")
    if kl > MAX_KL:
        advice.append("The policy drifted far from the reference: the reference must stay frozen (a separate model "
                      "loaded from reference_state and never updated, not the policy itself under no_grad), the "
                      "loss is the MEAN over pairs (a sum makes each SGD step N times larger), and each step is "
                      "plain SGD at lr.")
    m = len(held_out["chosen_ids"])
    fail(f"{what}: the judge loaded the returned weights and measured, on {m} held-out pairs, a mean implicit-reward "
         f"margin beta * ((log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)) of {margin:.3f} "
         f"({accuracy:.0%} of the pairs above 0; it starts at 0 and must reach at least {MIN_MARGIN}), and a mean "
         f"per-token KL(policy || reference) over the chosen responses of {kl:.3f} nats (at most {MAX_KL}). "
         + " ".join(advice))


@pytest.mark.points(4)
@pytest.mark.timeout(60)
def test_training_raises_held_out_margin(expect):
    judge_training(expect, preference_pairs(64, seed=1), preference_pairs(128, seed=2), **TRAIN)


# --- hidden -----------------------------------------------------------------------------------


@pytest.mark.hidden
@pytest.mark.timeout(60)
def test_hidden_fresh_pairs_and_shapes(expect, rng):
    """What the public checks do not show: fresh pairs and held-out pairs from the seed, rejected
    sequences padded to a different width than the chosen ones (3 more columns), a different
    beta, lr and number of steps; and the losses on float64 inputs with responses of one token."""
    seed = int(rng.randint(0, 2**31 - 1, (1,)))
    # 30 seeds of this set-up: the reference reaches a margin of 0.80 to 1.79 and a KL of 0.11 to 0.23
    pairs = preference_pairs(56, seed, prompt_len=5, lengths=(3, 9), extra_rejected_padding=3)
    held_out = preference_pairs(128, seed + 1, prompt_len=5, lengths=(3, 9))
    judge_training(expect, pairs, held_out, beta=0.6, lr=0.08, steps=30)
    pc, pr, rc, rr = (x.double() for x in logps(rng, 11))
    expect(lambda s: s.dpo_loss(pc, pr, rc, rr, beta=0.05), truth=truth_dpo(pc, pr, rc, rr, 0.05),
           atol=1e-12, rtol=1e-10, name="dpo_loss(11 pairs of float64 log-probs, beta=0.05) (float64 expected)")
    ones = torch.ones(11, dtype=torch.long)
    expect(lambda s: s.ipo_loss(pc, pr, rc, rr, ones, 2 * ones, beta=0.7),
           truth=truth_ipo(pc, pr, rc, rr, ones, 2 * ones, 0.7), atol=1e-12, rtol=1e-10,
           name="ipo_loss(11 pairs of float64 log-probs, responses of 1 and 2 tokens, beta=0.7)")
