"""GRPO (Shao et al. 2024, DeepSeekMath): group-normalised advantages, the clipped loss with a
KL term, and a verifiable reward.

GRPO drops PPO's critic. For each prompt it samples a GROUP of G completions, scores each
with a reward (here a verifiable one: is the final answer exactly right?), and uses the
reward's standing within its group as the advantage of every token of that completion.
Conventions follow the paper's formulas and, where those leave a choice, TRL's GRPOTrainer:

- Layout: the N = B * G completions of a batch are grouped CONSECUTIVELY: entries
  g * G .. g * G + G - 1 are the G completions of prompt g (TRL's
  `rewards.view(-1, num_generations)`, prompts repeated with repeat_interleave).
- Float tensors of one call share one floating dtype (float32 or float64); returned
  tensors have it (except `answer_reward`, always float32). Compute in that dtype: float64
  inputs are computed in float64.
- `mask` is a bool tensor (N, T), True on the completion's tokens, False on padding; values
  at masked positions are arbitrary finite numbers and must not change the result.
- Inputs are never modified in place.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised advantages: a float tensor of shape (N,), like `rewards` (N,) = (B * G,).

    For each group (G = group_size consecutive rewards) with mean m and standard deviation s:
        A_i = (r_i - m) / (s + eps)
    where s is the UNBIASED standard deviation (Bessel's correction, divide by G - 1:
    torch.std's default), as TRL's GRPOTrainer computes it, and eps = 1e-4 (TRL's) is added to
    s itself (not to the variance, not inside a square root). Each group is normalised by its
    own statistics, never the whole batch's.

    A group whose rewards are all equal has s = 0 and every advantage is exactly 0
    ((r - m) / eps with r == m), never NaN: such a group teaches nothing. Raises ValueError
    when `rewards` is not 1-d, when its length is not a multiple of `group_size`, or when
    group_size < 2 (one sample has no unbiased standard deviation; TRL refuses
    num_generations < 2 too).
    """
    raise NotImplementedError


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.04,
) -> torch.Tensor:
    """The GRPO loss (minus the paper's objective, eq. 3 of DeepSeekMath), a 0-d tensor.

    `logp`, `old_logp`, `ref_logp` (N, T): per-token log-probs of the completions under the
    current policy, the policy that sampled them and the frozen reference model;
    `advantages` (N,): one per completion (from `group_advantages`), shared by all its tokens.
    Per valid token t of completion i, with ratio = exp(logp - old_logp):
        surrogate = min(ratio * A_i, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A_i)
        kl        = exp(ref_logp - logp) - (ref_logp - logp) - 1
                    (the k3 estimator of KL(pi_theta || pi_ref): r - 1 - log r with
                    r = pi_ref / pi_theta; >= 0)
        loss_t    = -(surrogate - beta * kl)      (the KL term is a PENALTY: it adds to the loss)
    Averaging (the paper's 1/G sum_i 1/|o_i| sum_t, TRL's loss_type="grpo"): each completion's
    loss is the mean of loss_t over ITS OWN valid tokens (sum / count, the count clamped to at
    least 1, so a completion with no valid token contributes 0), and the result is the plain
    mean of those N per-completion losses. It is NOT one token mean over the whole batch
    (TRL's "bnpo"/"dapo"), and padding never counts.

    Differentiable with respect to `logp`; `old_logp`, `ref_logp` and `advantages` are
    constants (detaching them is fine). `beta` = 0.04 is the paper's value; beta = 0 drops
    the KL term.
    """
    raise NotImplementedError


def extract_answer(completion: str) -> str | None:
    """The final answer of a completion: the text between the LAST "<answer>" and the first
    "</answer>" that follows it, with leading and trailing whitespace removed (str.strip()).

    None when the completion has no "<answer>", or no "</answer>" after its last "<answer>"
    (a truncated completion has no final answer, even if an earlier answer was closed). Tags
    are matched exactly and case-sensitively; nothing else is normalised (no number parsing:
    "42.0", "042" and "+42" are not "42").
    """
    raise NotImplementedError


def answer_reward(completions: list[str], answers: list[str]) -> torch.Tensor:
    """A verifiable, binary reward: a float32 tensor (N,) for N completions and N known answers.

    reward_i = 1.0 when extract_answer(completions[i]) is exactly answers[i].strip() (string
    equality), else 0.0 (also when there is no final answer). No partial credit: the right
    answer somewhere else in the text, or a final answer that merely CONTAINS the right one
    ("420" or "x = 42" for "42"), scores 0. Raises ValueError when the two lists differ in length.
    """
    raise NotImplementedError
