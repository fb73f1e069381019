"""Job names: deterministic per run and task, valid for SageMaker, room for attempt suffixes."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skinlesion.backends.sagemaker.naming import (
    MAX_NAME,
    JobNameError,
    attempt_name,
    job_name,
    resource_name,
)

SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def test_same_run_and_task_give_the_same_name_and_others_differ() -> None:
    first = job_name("train", prefix="skinlesion-dev", run_id="run-1", task_name="train")
    assert first == job_name("train", prefix="skinlesion-dev", run_id="run-1", task_name="train")
    assert first.startswith("skinlesion-dev-train-")
    others = {
        job_name("train", prefix="skinlesion-dev", run_id="run-2", task_name="train"),
        job_name("train", prefix="skinlesion-dev", run_id="run-1", task_name="train-2"),
        job_name("evaluate", prefix="skinlesion-dev", run_id="run-1", task_name="train"),
    }
    assert first not in others and len(others) == 3


def test_explicit_names_win_and_are_checked() -> None:
    assert job_name("train", prefix="p", run_id="r", explicit="my-job-1") == "my-job-1"
    with pytest.raises(JobNameError, match="letters, digits and hyphens"):
        job_name("train", prefix="p", run_id="r", explicit="my_job")


def test_without_a_run_id_names_are_unique_and_the_retry_risk_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        first = job_name("train", prefix="p", run_id="")
        second = job_name("train", prefix="p", run_id="")
    assert first != second
    assert "a retry of this step would start a new job" in caplog.text


def test_attempt_names() -> None:
    assert attempt_name("base", 1) == "base"
    assert attempt_name("base", 2) == "base-a2"
    assert len(attempt_name("x" * MAX_NAME, 9)) == MAX_NAME
    with pytest.raises(JobNameError, match="1 to 9"):
        attempt_name("base", 10)


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?", fullmatch=True),
    run_id=st.text(min_size=1, max_size=200),
    task=st.text(max_size=200),
    stage=st.sampled_from(["preprocess", "train", "evaluate"]),
    attempt=st.integers(1, 9),
)
def test_every_derived_name_is_a_valid_sagemaker_name(
    prefix: str, run_id: str, task: str, stage: str, attempt: int
) -> None:
    name = attempt_name(job_name(stage, prefix=prefix, run_id=run_id, task_name=task), attempt)
    assert SAGEMAKER_NAME.fullmatch(name), name
    assert len(name) <= MAX_NAME


def test_resource_name_cuts_the_first_part_only() -> None:
    name = resource_name("e" * 80, "v12", "abcdef12")
    assert name.endswith("-v12-abcdef12") and len(name) == MAX_NAME
    assert resource_name("my_endpoint!", "v1") == "my-endpoint-v1"
