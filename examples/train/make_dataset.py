"""Put a synthetic raw dataset into S3 for train.py: s3://$TRAIN_BUCKET/datasets/churn/customers.csv.

Creates the bucket if it does not exist.  The rows are generated from a fixed
seed, so every run uploads the same file.
"""

import csv
import io
import math
import os
import random

import boto3

BUCKET = os.environ.get("TRAIN_BUCKET", "ml-demo")
KEY = "datasets/churn/customers.csv"

s3 = boto3.client("s3")  # region, credentials and AWS_ENDPOINT_URL come from the usual AWS settings
try:
    s3.head_bucket(Bucket=BUCKET)
except s3.exceptions.ClientError:
    region = s3.meta.region_name
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=BUCKET, **location)

rng = random.Random(7)
out = io.StringIO()
writer = csv.writer(out, lineterminator="\n")
writer.writerow(["tenure_months", "monthly_spend", "support_calls", "churned"])
for _ in range(400):
    tenure, spend, calls = rng.randint(1, 72), round(rng.uniform(10, 120), 2), rng.randint(0, 9)
    # churn is likelier for new customers who call support a lot and pay a lot
    risk = 1.5 - 0.06 * tenure + 0.35 * calls + 0.01 * spend + rng.gauss(0, 0.8)
    writer.writerow([tenure, spend, calls, int(1 / (1 + math.exp(-risk)) > 0.5)])

s3.put_object(Bucket=BUCKET, Key=KEY, Body=out.getvalue().encode())
print(f"uploaded s3://{BUCKET}/{KEY}")
