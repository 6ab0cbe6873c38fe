"""`make bench` (videogen/bench.py): a quick run on one CPU device writes every row, with numbers that
agree with each other (MFU = FLOP/s / measured peak, FLOP/s = tokens/s x FLOPs per token, the AR bound
recomputed from the bytes it names)."""

from __future__ import annotations

import json
import math

import pytest

from videogen import bench as B
from videogen import train as LM
from videogen.lm.model import flops_per_token


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    result = B.main(["--quick", "--platforms", "cpu", "--out", str(out)])
    return result, json.loads(out.read_text())


@pytest.mark.slow  # 40-70 s on the shared 2-core VM: one compile per model / sampler
def test_quick_bench_has_every_row_and_sane_numbers(quick):
    result, written = quick
    assert written == json.loads(json.dumps(result))
    r = written["platforms"]["cpu"]
    for name in B.ROWS:
        assert name in r, name
        assert isinstance(r[name], float) and math.isfinite(r[name]) and r[name] > 0, (name, r[name])
    assert 0 < r["lm_train_mfu"] <= 1.5
    assert r["lm_train_flops_per_s"] == pytest.approx(r["lm_train_mfu"] * r["matmul_peak_flops"], rel=1e-6)
    # FLOP/s is tokens/s times the model's FLOPs per token (next-token: L + n - 1 positions, causal).
    tcfg = LM.transformer_config(B.lm_config(False, True), 64, (5, 2, 2))
    per_token = flops_per_token(tcfg, tcfg.max_seq_len - 1, causal=True)
    assert r["lm_train_flops_per_s"] == pytest.approx(r["lm_train_tokens_per_s"] * per_token, rel=1e-6)
    # The AR bound is batch x bandwidth / (weights + whole static KV cache of the 2B CFG sequences).
    for b in (1, 8):
        want = (
            b
            * r["memory_bandwidth_bytes_per_s"]
            / (r["lm_weight_bytes"] + r[f"ar_sampling_b{b}_kv_cache_bytes"])
        )
        assert r[f"ar_sampling_b{b}_bound_tokens_per_s"] == pytest.approx(want, rel=1e-9)
    assert r["ar_sampling_b8_kv_cache_bytes"] == 8 * r["ar_sampling_b1_kv_cache_bytes"]
    assert r["tokenizer_train_frames_per_s"] * r["tokenizer_train_seconds_per_step"] == pytest.approx(8 * 9)
    # The CPU column runs the tokenizer's convs as matmuls and times XLA's native conv as the reference.
    assert r["tokenizer_train_lax_conv_seconds_per_step"] > 0
    assert r["lm_train_reference_attention_seconds_per_step"] > 0  # jax.nn.dot_product_attention, same step
    assert 1e8 < r["peak_memory_bytes"] < 1e12
    assert r["matmul_dtype"] == "float32" and written["quick"] is True
    table = B.format_table(written)
    for label in (
        "matmul peak",
        "memory bandwidth",
        "tokenizer train step",
        "native 3D conv",
        "tokenizer encode",
        "tokenizer decode",
        "LM train, next-token",
        "dot_product_attention",
        "MFU",
        "AR sampling batch 1",
        "AR sampling batch 8",
        "MaskGIT 12 steps",
        "data pipeline",
        "peak memory",
    ):
        assert label in table, label
    assert "| –" not in table.split("LM train, MaskGIT")[0]  # every headline cell filled


def test_unknown_platform_is_named():
    with pytest.raises(ValueError, match="no tpu device here"):
        B.run(quick=True, platforms="cpu,tpu")
