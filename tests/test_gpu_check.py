"""experiments/gpu_check.py, the one-command GPU check: its step sizing, its reading of test outcomes, its
summary, and that every test it names on the GPU still exists (a rename would silently drop one there)."""

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "experiments" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_steps_fit_the_time_left_after_overhead():
    # 90 s, 30 s of compile/eval, 0.1 s a step with a 15 % margin -> 521 steps.
    assert gpu_check.steps_that_fit(90, 0.1, overhead=30, floor=100, cap=20_000) == int(60 / 0.115)
    assert gpu_check.steps_that_fit(90, None, overhead=30, floor=100, cap=20_000) == 100  # no bench figure
    assert gpu_check.steps_that_fit(90, 10.0, overhead=30, floor=100, cap=20_000) == 100  # never below floor
    assert gpu_check.steps_that_fit(9e9, 0.1, overhead=30, floor=100, cap=20_000) == 20_000


def test_every_numerics_test_exists():
    for node in gpu_check.NUMERICS_TESTS:
        path, name = node.split("::")
        assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), node


def test_outcomes_from_junit_or_from_the_log_of_a_stopped_run(tmp_path):
    junit = tmp_path / "n.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="tests.test_model" name="test_a"/>'
        '<testcase classname="tests.test_model" name="test_b"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_model" name="test_c"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    assert gpu_check._test_outcomes(junit, tmp_path / "missing.log") == (["test_model::test_b"], 1)
    log = tmp_path / "n.log"  # pytest -v killed at the section's limit: no XML was written
    log.write_text(
        "tests/test_model.py::test_a PASSED [ 10%]\ntests/test_model.py::test_b FAILED [ 20%]\n"
        "tests/test_model.py::test_c "
    )
    assert gpu_check._test_outcomes(tmp_path / "none.xml", log) == (["tests/test_model.py::test_b"], 1)


def test_summary_table_names_each_section_and_its_figures():
    summary = {
        "date": "2026-12-06 05:00",
        "platform": "gpu",
        "budget_s": 450,
        "total_seconds": 431.0,
        "sections": {
            "bench": {
                "status": "ok",
                "seconds": 150.0,
                "figures": {
                    "matmul_peak_flops": 7.5e14,
                    "matmul_dtype": "bfloat16",
                    "lm_train_mfu": 0.41,
                    "lm_train_maskgit_mfu": 0.45,
                    "tokenizer_train_seconds_per_step": 0.08,
                    "ar_sampling_b1_tokens_per_s": 900.0,
                    "maskgit_seconds_per_clip": 0.01,
                },
            },
            "numerics": {"status": "exit 1", "seconds": 80.0, "passed": 17, "failed": ["test_model::test_x"]},
            "tokenizer": {
                "status": "timed out after 90 s",
                "seconds": 90.0,
                "steps": 400,
                "train": {"step": 350, "psnr": 24.5, "lr": 1e-4},
                "eval": {},
            },
        },
    }
    table = gpu_check.format_summary(summary)
    assert "| bench | ok | 150 | peak 750 TFLOP/s bfloat16, LM MFU 41.0% (MaskGIT 45.0%)" in table
    assert "| numerics | exit 1 | 80 | 17 passed, failed: ['test_model::test_x'] |" in table
    assert "| tokenizer | timed out after 90 s | 90 | 400 steps; train step 350, psnr 24.5; eval  |" in table


@pytest.mark.parametrize("share", sorted(gpu_check.SHARES))
def test_shares_leave_the_whole_budget_to_the_sections(share):
    assert 0 < gpu_check.SHARES[share] < 0.5
    assert sum(gpu_check.SHARES.values()) == pytest.approx(1.0)


def test_a_failed_section_fails_the_script_and_a_misspelled_skip_is_refused(tmp_path, capsys):
    ok = {"status": "ok", "seconds": 1.0}
    assert gpu_check.failed({"sections": {"env": ok, "bench": ok}}) == []
    assert gpu_check.failed({"sections": {"env": ok, "bench": {"status": "exit 1", "seconds": 2.0}}}) == [
        "bench"
    ]
    assert gpu_check.failed({"sections": {"numerics": {**ok, "failed": ["tests/x.py::t"]}}}) == ["numerics"]
    stale = tmp_path / "work"
    (stale / "tok").mkdir(parents=True)
    with pytest.raises(SystemExit):  # before anything runs (and after the stale workdir is cleared)
        gpu_check.main(["--out", str(tmp_path / "out"), "--workdir", str(stale), "--skip", "bench,tokenizr"])
    assert "unknown section(s) ['tokenizr']" in capsys.readouterr().err
    assert not stale.exists()
