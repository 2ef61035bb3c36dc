"""Files for serve.py to serve: two churn model versions and each account manager's accounts.

    models/churn-v1.joblib     logistic regression
    models/churn-v2.joblib     scaler + logistic regression
    features/<user>.csv        the accounts alice, bob and carol look after

Generated from a fixed seed: every run writes the same models and accounts.
"""

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ["tenure_months", "monthly_spend", "support_calls"]
rng = np.random.default_rng(7)


def customers(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "tenure_months": rng.integers(1, 73, n),
        "monthly_spend": rng.uniform(10, 120, n).round(2),
        "support_calls": rng.integers(0, 10, n),
    })


history = customers(400)
risk = 1.5 - 0.06 * history.tenure_months + 0.35 * history.support_calls + 0.01 * history.monthly_spend
churned = (risk + rng.normal(0, 0.8, len(history)) > 0).astype(int)

Path("models").mkdir(exist_ok=True)
joblib.dump(LogisticRegression(max_iter=1000).fit(history[FEATURES], churned), "models/churn-v1.joblib")
joblib.dump(make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(history[FEATURES], churned),
            "models/churn-v2.joblib")

Path("features").mkdir(exist_ok=True)
for user in ("alice", "bob", "carol"):
    accounts = customers(3)
    accounts.insert(0, "account", [f"{user}-{i}" for i in range(1, 4)])
    accounts.to_csv(f"features/{user}.csv", index=False)
print("wrote models/churn-v1.joblib, models/churn-v2.joblib, features/{alice,bob,carol}.csv")
