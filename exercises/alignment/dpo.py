"""Direct Preference Optimization (DPO) and IPO: preference losses without a reward model.

A preference pair is a prompt x with two responses, a chosen one y_w and a rejected one y_l.
DPO (Rafailov et al. 2023) trains the policy pi directly on such pairs, against a frozen
reference model pi_ref (usually the SFT model the policy starts from):

    h    = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))
    loss = mean over pairs of  -log sigmoid(beta * h)

beta * log(pi(y|x) / pi_ref(y|x)) is the "implicit reward" of a response: the reward for which
pi is the best policy under a KL penalty of strength beta to pi_ref. The loss is the
Bradley-Terry likelihood that the chosen response wins under that reward.

Conventions (public implementations disagree on each; this exercise follows TRL's):
- log pi(y|x) of a response is the SUM of the log-probs of its tokens (not their mean), for
  the policy and the reference alike. The prompt's tokens and padding are not counted.
- The implicit rewards returned are beta * (log pi - log pi_ref): beta INCLUDED (TRL's
  chosen_rewards / rejected_rewards), and detached (they are for logging, not for gradients).
- IPO (Azar et al. 2023) replaces the sigmoid with a square, loss = mean (h - 1/(2 beta))^2, and
  TRL's IPO compares per-token AVERAGES: each of the four log-probs is divided by its
  response's number of tokens before h is formed (see `ipo_loss`).

You may use anything in torch (F.logsigmoid, log_softmax, gather) and transformers' GPT-2 for
`train_dpo`. Inputs are never modified in place.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: F401


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
) -> torch.Tensor:
    """The summed log-probability of each sequence's response tokens: a tensor of shape (B,).

    - `logits`: (B, T, V), a causal LM's output for `input_ids` (float16, bfloat16, float32
      or float64).
    - `input_ids`: int64 (B, T): prompt, then response, then right padding. Every id is a valid
      token id in [0, V), padding included (the mask, not the id, says what counts).
    - `response_mask`: (B, T), bool or 0/1 integers or floats, aligned with `input_ids`:
      response_mask[b, t] = 1 when token t of row b is a response token (0 on the prompt and
      on padding).

    The shift: logits[:, t] is the model's distribution for the NEXT token, input_ids[:, t + 1].
    So

        out[b] = sum over t = 1 .. T-1 with response_mask[b, t] = 1 of
                 log_softmax(logits[b, t - 1])[input_ids[b, t]]

    response_mask[:, 0] is ignored (nothing predicts the first token), and a row with no
    response token gets 0. The log-softmax must be stable for logits of any size (no
    log(softmax(.)), which underflows to log 0 = -inf for logits hundreds apart).

    Dtype: float64 logits are computed in float64 (a float64 result); float16, bfloat16 and
    float32 logits are computed in float32 (upcast them first; a float32 result).
    Differentiable with respect to `logits`.
    """
    raise NotImplementedError


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of N pairs and their implicit rewards.

    Each argument is a (N,) floating-point tensor of SUMMED response log-probs
    (`sequence_logprobs`): the policy's and the reference's, for the chosen and the rejected
    response of each pair. beta > 0.

    Returns (loss, chosen_rewards, rejected_rewards), in the inputs' dtype (float64 inputs are
    computed in float64, float32 ones in float32):
    - loss: a 0-d tensor, the MEAN over the N pairs of -log sigmoid(beta * h), with
      h = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected).
      It must stay finite however large beta * |h| is (use a stable log-sigmoid). It is
      differentiable with respect to every input (the reference log-probs are plain inputs
      here; the caller computes them without gradients).
    - chosen_rewards = beta * (policy_chosen - reference_chosen), (N,), detached;
    - rejected_rewards = beta * (policy_rejected - reference_rejected), (N,), detached.

    When the policy equals the reference (h = 0) the loss is log 2 and both rewards are 0.
    """
    raise NotImplementedError


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The IPO loss of N pairs (Azar et al. 2023, eq. 17, with tau = beta), TRL's way.

    The log-probs are the same SUMMED ones `dpo_loss` takes, (N,) each. `chosen_lengths` and
    `rejected_lengths` are (N,) tensors (integer or float) holding each response's number of
    tokens (>= 1): the count of response tokens `sequence_logprobs` summed over.

    Length normalisation (TRL's DPOTrainer with loss_type="ipo" divides every sequence's
    log-prob by its number of response tokens, for the policy and the reference alike):

        chosen_logratio   = (policy_chosen - reference_chosen) / chosen_lengths
        rejected_logratio = (policy_rejected - reference_rejected) / rejected_lengths
        h    = chosen_logratio - rejected_logratio
        loss = mean over pairs of (h - 1 / (2 * beta)) ** 2

    Returns (loss, chosen_rewards, rejected_rewards) in the log-probs' dtype (float64 log-probs
    are computed in float64, float32 ones in float32): the 0-d loss
    (differentiable), and beta * chosen_logratio and beta * rejected_logratio, (N,) each,
    detached (the per-token log-ratios, as TRL reports them for IPO). When the policy equals
    the reference the loss is 1 / (4 * beta ** 2).
    """
    raise NotImplementedError


def train_dpo(
    config: dict[str, Any],
    policy_state: dict[str, torch.Tensor],
    reference_state: dict[str, torch.Tensor],
    pairs: dict[str, torch.Tensor],
    *,
    beta: float,
    lr: float,
    steps: int,
) -> dict[str, torch.Tensor]:
    """A few DPO steps on a tiny GPT-2; returns the trained policy's state dict.

    How you are judged: the judge never asks what your loss was. It loads the weights you
    RETURN into its own `GPT2LMHeadModel` and measures, on preference pairs it kept back,
    (1) the mean implicit-reward margin, beta * ((log pi - log pi_ref)(chosen) -
    (log pi - log pi_ref)(rejected)) with summed log-probs, which starts at 0 and must rise
    to at least 0.4 (a correct run reaches 0.8 to 1.8), and (2) the mean per-token
    KL(pi || pi_ref) over the kept-back chosen responses' tokens, which must stay at most
    0.5 nats (a correct run: about 0.1 to 0.25).

    Inputs:
    - `config`: GPT2Config keyword arguments (dropout 0, eager attention). Build two models,
      `GPT2LMHeadModel(GPT2Config(**config))`, and load `policy_state` into the policy and
      `reference_state` into the reference (the judge passes the same weights for both, as
      when DPO starts from the SFT model). Do not re-initialise or re-seed anything.
    - `pairs`: a dict of int64 tensors, row i of each belonging to pair i (N pairs):
      "chosen_ids" (N, Tc) and "chosen_mask" (N, Tc): the prompt followed by the chosen
      response, right-padded, and its response mask (1 on the response's tokens, 0 on the
      prompt and padding), as `sequence_logprobs` takes them; "rejected_ids" (N, Tr) and
      "rejected_mask" (N, Tr) likewise (the same prompt, the rejected response; Tr may differ
      from Tc). Padding is on the right only, so no attention mask is needed: call
      `model(input_ids=ids)`; padding never changes the logits of the positions scored.

    Each of the `steps` steps uses ALL N pairs (one full batch, no shuffling):
    1. the policy's summed log-probs of every chosen and every rejected response
       (`sequence_logprobs` of `model(input_ids=...).logits`), with gradients;
    2. the reference's, under torch.no_grad(); the reference is FROZEN: a separate model,
       never stepped (not the policy itself);
    3. loss = dpo_loss(...)[0] with `beta` (the mean over the N pairs);
    4. zero the gradients, loss.backward(), and one step of torch.optim.SGD(
       policy.parameters(), lr=lr): plain SGD, no momentum, no weight decay, no clipping.
       (Plain SGD moves the weights in proportion to the loss's gradient, so DPO's own
       weighting of the pairs, sigmoid(-beta * h), decides how far each step goes.)

    Returns the policy's state dict after the last step, {name: tensor} with every key of
    `policy.state_dict()` (detached copies).
    """
    raise NotImplementedError
