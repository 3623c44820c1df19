"""Train-stage fixtures: small chat datasets written like the curate stage writes them, and smoke-spec variants."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

WORDS = ("quantum kernel feature map fidelity noise decoherence depolarizing channel Kraus operator support vector "
         "Hilbert space variational circuit encoding expressibility mitigation NISQ device").split()


def conversations(n: int, seed: int = 0, answer_words: tuple[int, int] = (8, 30)) -> list[dict]:
    """Rows with the curate columns that train reads (id, messages); answers of varied length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        question = f"What is the role of {rng.choice(WORDS)} in {rng.choice(WORDS)}?"
        answer = "It " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(*answer_words))) + "."
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if i % 3 == 0:
            messages.insert(0, {"role": "system", "content": "You answer questions about quantum computing."})
        rows.append({"id": f"ex{i:03d}", "messages": messages, "template": "explain"})
    return rows


def write_dataset(folder: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "train.parquet")
    return folder


def with_train(spec, **changes):
    """The spec with train fields replaced; `lora` and `execution` take dicts of their own fields."""
    t = spec.train
    if "lora" in changes:
        changes["lora"] = dataclasses.replace(t.lora, **changes["lora"])
    if "execution" in changes:
        changes["execution"] = dataclasses.replace(t.execution, **changes["execution"])
    return dataclasses.replace(spec, train=dataclasses.replace(t, **changes))


def perturb_lora_b(model, seed: int = 1):
    """B (the LoRA up-projection) starts at zero, which makes A's gradient zero: perturb it so both are tested."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    return model


def take_grads(model) -> dict:
    """The trainable parameters' gradients (copies), then cleared for the next pass."""
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return out


def loss_and_grads(model, examples, layout) -> tuple[float, dict]:
    """One step's loss and gradients on the CPU in float32, from a fixed seed (the same dropout masks each call)."""
    import torch

    from jobs.train.loop import accumulate

    torch.manual_seed(7)
    loss, _, _ = accumulate(model, examples, layout, device=torch.device("cpu"), dtype=torch.float32)
    return float(loss), take_grads(model)


def assert_same_step(a: tuple[float, dict], b: tuple[float, dict], atol: float) -> None:
    """Two loss_and_grads results agree within atol, and the LoRA A gradients are not all zero."""
    import torch

    assert abs(a[0] - b[0]) <= atol, (a[0], b[0])
    assert any(g.abs().sum() > 0 for n, g in a[1].items() if "lora_A" in n)
    for name, g in a[1].items():
        torch.testing.assert_close(b[1][name], g, rtol=0, atol=atol)


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_dataset(tmp_path / "dataset", conversations(16))


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    from jobs.core.engine.loading import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """The tiny model runs fastest on one thread (what the smoke spec's execution.cpu_threads says too)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
