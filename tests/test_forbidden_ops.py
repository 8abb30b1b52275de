"""An exercise's forbidden library ops fail the check with the op named."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_grade


def test_calling_the_library_op_fails_with_its_name(solutions_copy: Path, tmp_path: Path):
    (solutions_copy / "foundations" / "softmax.py").write_text(
        "import torch\n"
        "def softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n"
        "def log_softmax(x, dim=-1):\n    return torch.nn.functional.log_softmax(x, dim)\n"
        "def logsumexp(x, dim=-1, keepdim=False):\n    return x.logsumexp(dim, keepdim=keepdim)\n"
    )
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", str(solutions_copy), "foundations.softmax", "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads(out.read_text())["tracks"][0]["exercises"][0]["checks"]
    messages = {c["name"]: c["message"] for c in checks}
    assert all(c["outcome"] == "failed" for c in checks), messages
    assert "may not call torch.softmax" in messages["softmax_matches_torch"]
    assert "may not call torch.nn.functional.log_softmax" in messages["log_softmax_matches_torch"]
    assert "may not call torch.Tensor.logsumexp" in messages["logsumexp_matches_torch"]


def test_autograd_is_forbidden_but_gradient_probes_still_work(solutions_copy: Path, tmp_path: Path):
    source = (solutions_copy / "foundations" / "layernorm_backward.py").read_text()
    cheat = source + (
        "\n\ndef layernorm_backward(grad_y, cache):\n"
        "    import torch\n"
        "    x = torch.ones(3, requires_grad=True)\n"
        "    (x * 2).sum().backward()\n"
        "    return x.grad, x.grad, x.grad\n"
    )
    (solutions_copy / "foundations" / "layernorm_backward.py").write_text(cheat)
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", str(solutions_copy), "foundations.layernorm_backward", "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads(out.read_text())["tracks"][0]["exercises"][0]["checks"]
    backward = [c for c in checks if c["name"] == "backward_matches_autograd_float64"][0]
    assert backward["outcome"] == "failed"
    assert "may not call torch.Tensor.backward" in backward["message"]
    forward = [c for c in checks if c["name"] == "forward_matches_f_layer_norm"][0]
    assert forward["outcome"] == "passed", forward["message"]
