"""Train a small churn classifier: raw data from S3, model artifacts back to S3.

An ordinary training job with no otel-audit code in it.  Run it under
`opentelemetry-instrument` (see README.md) and every dataset and model access
below becomes an audit record, joined to the job's `train` trace.
"""

import json
import os
from pathlib import Path

import boto3
import joblib
import pandas as pd
import torch
from opentelemetry import trace
from sklearn.preprocessing import StandardScaler

BUCKET = os.environ.get("TRAIN_BUCKET", "ml-demo")
DATASET_KEY = "datasets/churn/customers.csv"
MODEL_PREFIX = "models/churn/"
FEATURES = ["tenure_months", "monthly_spend", "support_calls"]
TARGET = "churned"
EPOCHS = 200

workdir = Path(os.environ.get("TRAIN_WORKDIR", "run"))
tracer = trace.get_tracer(__name__)  # a no-op unless an OpenTelemetry SDK is configured


def new_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def as_tensors(frame: pd.DataFrame, scaler: StandardScaler) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(scaler.transform(frame[FEATURES]), dtype=torch.float32)
    return x, torch.tensor(frame[TARGET].to_numpy(), dtype=torch.float32)


@tracer.start_as_current_span("fetch-data")
def fetch_dataset(s3) -> pd.DataFrame:
    local = workdir / "customers.csv"
    s3.download_file(BUCKET, DATASET_KEY, str(local))
    return pd.read_csv(local)


@tracer.start_as_current_span("preprocess")
def fit_scaler(train: pd.DataFrame) -> StandardScaler:
    scaler = StandardScaler().fit(train[FEATURES])
    joblib.dump(scaler, workdir / "scaler.joblib")
    return scaler


@tracer.start_as_current_span("fit")
def train_model(train: pd.DataFrame, scaler: StandardScaler) -> None:
    torch.manual_seed(0)  # same weights, same loss, every run
    x, y = as_tensors(train, scaler)
    model = new_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(1, EPOCHS + 1):
        optimizer.zero_grad()
        loss = loss_fn(model(x).squeeze(1), y)
        loss.backward()
        optimizer.step()
        if epoch % 50 == 0:
            print(f"epoch {epoch}: train loss {loss.item():.4f}")
    torch.save(model.state_dict(), workdir / "model.pt")


@tracer.start_as_current_span("evaluate")
def evaluate(test: pd.DataFrame) -> dict:
    # Score with the saved artifacts, exactly as a serving job would load them.
    scaler = joblib.load(workdir / "scaler.joblib")
    model = new_model()
    model.load_state_dict(torch.load(workdir / "model.pt"))
    x, y = as_tensors(test, scaler)
    with torch.no_grad():
        predicted = (model(x).squeeze(1) > 0).float()
    metrics = {"test_rows": len(test), "accuracy": round((predicted == y).float().mean().item(), 4)}
    with open(workdir / "metrics.json", "w") as out:
        json.dump(metrics, out)
    return metrics


@tracer.start_as_current_span("publish")
def publish(s3) -> None:
    for name in ("model.pt", "scaler.joblib"):
        s3.upload_file(str(workdir / name), BUCKET, MODEL_PREFIX + name)
    print(f"published s3://{BUCKET}/{MODEL_PREFIX}model.pt")


def main() -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    s3 = boto3.client("s3")  # AWS_ENDPOINT_URL points it at a local S3 (moto, MinIO) when set
    with tracer.start_as_current_span("train"):
        frame = fetch_dataset(s3)
        train, test = frame.iloc[:320], frame.iloc[320:]
        scaler = fit_scaler(train)
        train_model(train, scaler)
        metrics = evaluate(test)
        print(f"test accuracy {metrics['accuracy']:.4f} on {metrics['test_rows']} rows")
        publish(s3)


if __name__ == "__main__":
    main()
