"""The train stage: dataset folder + build spec in, LoRA adapter folder out.

    python -m jobs.train --spec SPEC --dataset DATASET_DIR --out ADAPTER_DIR

run.py the stage function, one function per phase; model.py the base with a fresh LoRA adapter; data.py
tokenisation, loss mask, step plan and packed or padded micro-batches; packing.py attention kept inside each
example of a packed row; loop.py one optimizer step; execution.py the speed knobs that act on the model
(dequantize once, checkpointed layers, compiled layers); checkpoint.py resume state; preflight.py the memory check
and the fit advisor; steplog.py the bar, Argo's progress and the metrics log. The throughput benchmark and its
step profile are tools: bench/train.py, bench/stepprofile.py.
"""

from jobs.core.errors import QslmError


class TrainError(QslmError):
    """An adapter folder that cannot be written or resumed (it holds another spec's or dataset's work)."""
