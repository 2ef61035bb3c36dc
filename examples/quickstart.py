"""Quickstart: an ordinary training script with no otel-audit code in it.

Run it under `opentelemetry-instrument` (see the README's first command) and
every data and model access below becomes an audit record.
"""

from pathlib import Path

import joblib
import pandas as pd
from sklearn.linear_model import LogisticRegression

workdir = Path("quickstart-data")
workdir.mkdir(exist_ok=True)

# 1. some data to train on (writing it is an access too)
pd.DataFrame({"age": [23, 35, 47, 59, 31, 44], "churned": [0, 0, 1, 1, 0, 1]}).to_csv(workdir / "customers.csv", index=False)

# 2. train on it and save the model
frame = pd.read_csv(workdir / "customers.csv")
model = LogisticRegression().fit(frame[["age"]], frame["churned"])
joblib.dump(model, workdir / "churn.joblib")

# 3. later: load the model and score
model = joblib.load(workdir / "churn.joblib")
print("churn probability at 50:", round(float(model.predict_proba(pd.DataFrame({"age": [50]}))[0][1]), 2))

# 4. a failed access is on record too
try:
    pd.read_csv(workdir / "holdout.csv")
except FileNotFoundError:
    print("no holdout set (that failed read is in the audit trail)")
