"""Cost per job: the price table, a job's estimate, and the record of a training job on moto."""

from __future__ import annotations

import pytest
from tests.aws.helpers import BUCKETS

from skinlesion.aws import AwsClients
from skinlesion.backends.base import TrainRequest
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.config import TrainConfig
from skinlesion.cost import PriceNotFoundError, hourly_price, job_cost, price_table, total_usd


def test_the_price_table_names_its_source_date_and_unconfirmed_prices() -> None:
    table = price_table()
    assert table["source"].startswith("https://aws.amazon.com/sagemaker/pricing")
    assert table["read_on"]
    for region in ("us-east-1", "eu-west-1"):
        for usage in ("training", "processing", "inference", "transform"):
            for entry in table["regions"][region][usage].values():
                assert entry["usd_per_hour"] > 0 and "confirmed" in entry


def test_a_job_costs_instances_times_billable_hours_times_the_price() -> None:
    cost = job_cost("us-east-1", "training", "ml.g4dn.xlarge", 2, 1800, spot_savings=0.6)
    assert cost.usd == pytest.approx(
        2 * 0.5 * hourly_price("us-east-1", "training", "ml.g4dn.xlarge")
    )
    assert total_usd([cost.as_dict(), cost.as_dict()]) == pytest.approx(2 * cost.usd, abs=1e-3)
    with pytest.raises(PriceNotFoundError, match=r"No training price for ml.p5.48xlarge .*Known:"):
        job_cost("us-east-1", "training", "ml.p5.48xlarge", 1, 60)
    with pytest.raises(PriceNotFoundError, match=r"region 'mars-1'.*Known: eu-west-1, us-east-1"):
        hourly_price("mars-1", "training", "ml.g4dn.xlarge")


def test_a_training_job_records_its_instances_and_cost(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    models = BUCKETS["models_bucket"]
    result = backend.train(
        TrainRequest(
            dataset_uri=f"s3://{BUCKETS['processed_bucket']}/runs/c1/dataset",
            model_uri=f"s3://{models}/runs/c1/train/model",
            config=TrainConfig(epochs=1, instance_count=2),
            run_id="c1",
            task_name="train",
        )
    )
    job = clients.client("sagemaker").describe_training_job(TrainingJobName=result.job_name)
    assert job["ResourceConfig"]["InstanceCount"] == 2
    cost = result.details["cost"]
    assert cost["instance_type"] == "ml.g4dn.xlarge" and cost["instance_count"] == 2
    seconds = job.get("BillableTimeInSeconds", job.get("TrainingTimeInSeconds", 0))
    assert cost["billable_seconds"] == seconds
    expected = 2 * seconds / 3600 * hourly_price("us-east-1", "training", "ml.g4dn.xlarge")
    assert cost["usd"] == pytest.approx(expected, abs=1e-4)


def test_the_monthly_estimate_counts_schedules_and_both_scales() -> None:
    from skinlesion.cost import MonthlyAssumptions, format_table, monthly_estimate, runs_per_month

    assert runs_per_month("0 0 * * * *") == 720  # hourly in a 30-day month
    assert runs_per_month("0 30 */6 * * *") == 120
    assert runs_per_month("0 0 3 1 * *") == 1
    with pytest.raises(ValueError, match="six fields"):
        runs_per_month("0 * * * *")
    params = {"pipelines": {"training": {"instance_type": "ml.m5.large", "min_instances": 1,
                                         "max_instances": 3}}}  # fmt: skip
    schedules = [{"name": "drift", "pipeline": "monitoring", "cron": "0 0 * * * *"}]
    rows = monthly_estimate(params, schedules, MonthlyAssumptions())
    by_item = {item: usd for item, _, usd in rows}
    hour = hourly_price("us-east-1", "inference", "ml.m5.large")
    assert by_item["endpoint (max scale)"] == pytest.approx(3 * hour * 730)
    assert by_item["drift"] == pytest.approx(
        720 * 10 / 60 * hourly_price("us-east-1", "processing", "ml.m5.xlarge")
    )
    assert "total (max scale)" in format_table(rows)
