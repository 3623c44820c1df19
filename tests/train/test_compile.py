"""Compiled decoder layers (train.execution.compile) train what eager layers train: tiny model, real 4-bit NF4
dequantized once, float32, CPU, inductor. Slow: each graph compiles for about half a minute on a CPU."""

from __future__ import annotations

import pytest
import torch

from jobs.train import execution
from jobs.train.data import tokenize
from jobs.train.loop import Layout
from jobs.train.model import load_model
from tests.train.conftest import (assert_same_step, conversations, loss_and_grads, perturb_lora_b,
                                  with_train)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def steps(tokenizer):
    """Two steps of 4 examples with packed rows of different lengths: the second must reuse the first's graphs."""
    rows = [(r["id"], r["messages"]) for r in conversations(8, answer_words=(2, 50))]
    examples = tokenize(rows, tokenizer, 4096, "truncate").examples
    assert sum(len(e.input_ids) for e in examples[:4]) != sum(len(e.input_ids) for e in examples[4:])
    layout = Layout(micro_batch_size=4, packed=True, pad_id=tokenizer.pad_token_id, loss_chunk_tokens=7)
    return [(examples[:4], layout), (examples[4:], layout)]


@pytest.fixture(autouse=True)
def fresh_compiler():
    torch._dynamo.reset()  # graphs and counters of other tests' models out of the way
    yield
    torch._dynamo.reset()


def _model(spec, tiny_model, compiled: bool):
    spec = with_train(spec, execution={"dequantize_once": True, "compile": compiled})
    model = load_model(spec, tiny_model, torch.device("cpu"))
    execution.apply(model, spec)
    return perturb_lora_b(model)


def test_compiled_layers_give_the_eager_loss_and_gradients(smoke_spec, tiny_model, steps):
    """LoRA dropout on (0.05): the compiled layers draw their masks from torch's generator as eager layers do
    (inductor's fallback_random), so from the same seed both train the same step."""
    spec = smoke_spec
    assert spec.train.lora.dropout > 0
    eager, compiled = _model(spec, tiny_model, False), _model(spec, tiny_model, True)
    assert execution.checkpointed_layers(compiled) == [True, True]
    # LoRA on q, k, v, o: each layer's down projection runs outside the compiled, recomputed part
    assert all(layer.forward.to_down is not None for layer in execution.decoder_layers(compiled))
    execution.set_checkpoint_layers(compiled, 1)  # layer 0 recomputed in backward, layer 1 not: both graphs
    assert execution.checkpointed_layers(compiled) == [True, False]
    for examples, layout in steps:
        torch.manual_seed(5)
        expected = loss_and_grads(eager, examples, layout)
        torch.manual_seed(5)
        assert_same_step(expected, loss_and_grads(compiled, examples, layout), atol=1e-5)
    # the checkpointed layer's no-grad forward, its recompute (silu(gate) * up not computed) and layer 1's training
    # graph, whatever the row length (dynamic shapes: no recompile per step)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3


def test_a_checkpointed_compiled_layer_replays_its_dropout_masks(smoke_spec, tiny_model, steps):
    compiled = _model(smoke_spec, tiny_model, True)  # LoRA dropout 0.05
    assert smoke_spec.train.lora.dropout > 0
    examples, layout = steps[0]
    recomputed = loss_and_grads(compiled, examples, layout)
    # Activations kept: the forward runs the training graph and its backward uses that forward's own masks; the
    # same loss and gradients say the no-grad graph and the recompute drew those masks too.
    execution.set_checkpoint_layers(compiled, 0)
    assert_same_step(recomputed, loss_and_grads(compiled, examples, layout), atol=1e-6)
    no_dropout = _model(with_train(smoke_spec, lora={"dropout": 0.0}), tiny_model, False)
    assert abs(recomputed[0] - loss_and_grads(no_dropout, examples, layout)[0]) > 1e-4  # masks were drawn


def test_the_recompute_stops_before_the_down_projection(smoke_spec, tiny_model, steps):
    """A checkpointed step runs each layer's down projection once (its forward), not again in the recompute: its
    backward needs the frozen weight only. With LoRA on it (v3), the whole layer is recomputed as before."""
    spec = with_train(smoke_spec, lora={"dropout": 0.0})
    compiled = _model(spec, tiny_model, True)
    calls = []
    for layer in execution.decoder_layers(compiled):
        layer.mlp.down_proj.register_forward_hook(lambda module, args, out: calls.append(module))
    examples, layout = steps[0]
    loss_and_grads(compiled, examples, layout)
    assert len(calls) == len(execution.decoder_layers(compiled)) * -(-len(examples) // layout.micro_batch_size)

    with_down = with_train(spec, lora={"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]},
                           execution={"dequantize_once": True, "compile": True})
    model = load_model(with_down, tiny_model, torch.device("cpu"))
    execution.apply(model, with_down)
    assert not any(execution.splits_down(layer) for layer in execution.decoder_layers(model))
    assert all(layer.forward.to_down is None for layer in execution.decoder_layers(model))
