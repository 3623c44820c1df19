"""The step profile's idle report: GPU gaps split into the host's part and the device's."""

from __future__ import annotations

from bench.stepprofile import idle_report


def test_gaps_are_split_between_the_host_and_the_device():
    us = 1000
    ops = [  # (start, end, name, correlation): ns
        (0, 100 * us, "mm", 1),
        (103 * us, 110 * us, "dropout", 2),  # 3 us gap, launched long before: the device's
        (105 * us, 108 * us, "memset", 3),  # inside the work before it: no gap, no busy time added
        (150 * us, 160 * us, "mm", 4),  # 40 us gap, launched at 140 us: 30 us the host's, 10 the device's
    ]
    report = idle_report(ops, {1: 0, 2: 50 * us, 3: 60 * us, 4: 140 * us}, steps=1)
    assert report["busy_ms"] == 0.117 and report["idle_ms"] == 0.043
    assert report["host_ms"] == 0.03 and report["device_ms"] == 0.013
    assert report["ops"] == 4
    counted = {g["under_us"]: (g["count"], g["ms"]) for g in report["gaps"]}
    assert counted[5] == (1, 0.003) and counted[50] == (1, 0.04) and counted[2] == (0, 0.0)
    assert report["pairs"][0] == {"before": "dropout", "after": "mm", "count": 1, "ms": 0.04}
    assert report["longest"][0] == {"at_ms": 0.15, "ms": 0.04, "before": "dropout", "after": "mm"}


def test_an_op_without_its_launch_call_counts_as_the_devices():
    us = 1000
    report = idle_report([(0, 10 * us, "a", 1), (30 * us, 40 * us, "b", 2)], {}, steps=2)
    assert report["idle_ms"] == report["device_ms"] == 0.01 and report["host_ms"] == 0.0  # per step: 20 us / 2
