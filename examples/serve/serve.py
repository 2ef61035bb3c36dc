"""A small churn-scoring service whose data and model accesses are attributed to end users.

    GET /predict?model=v2    (header X-End-User: alice)
      -> churn risk of each account in features/alice.csv, scored with models/churn-v2.joblib

The default model version is loaded at startup, other versions on first use.
Run it under `opentelemetry-instrument` (see README.md): every model load and
feature read becomes an audit record naming the end user it was made for.
"""

import argparse
import json
import re
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import joblib
import otel_audit
import pandas as pd
from opentelemetry import baggage, context, propagate, trace

FEATURES = ["tenure_months", "monthly_spend", "support_calls"]
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # user names and model versions become file names: nothing else
tracer = trace.get_tracer(__name__)


class Models:
    """Model versions from a directory, each loaded once, on first use."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._loaded = {}
        self._lock = threading.Lock()

    def get(self, version: str):
        with self._lock:
            if version not in self._loaded:
                self._loaded[version] = joblib.load(self.directory / f"churn-{version}.joblib")
            return self._loaded[version]


class Handler(BaseHTTPRequestHandler):
    models: Models
    features: Path
    default_model: str

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/predict":
            return self.reply(404, {"error": "not found"})
        # Join the caller's trace (traceparent) and take its baggage (e.g. enduser.id).
        token = context.attach(propagate.extract(self.headers))
        try:
            with tracer.start_as_current_span("GET /predict", kind=trace.SpanKind.SERVER):
                self.predict(parse_qs(url.query))
        finally:
            context.detach(token)

    def predict(self, query: dict) -> None:
        # Who is asking.  X-End-User stands in for the identity your auth layer verified
        # (a session, a JWT subject); an upstream service may pass it as baggage enduser.id.
        user = self.headers.get("X-End-User") or baggage.get_baggage("enduser.id")
        version = query.get("model", [self.default_model])[0]
        if not user:
            return self.reply(401, {"error": "who is asking? (X-End-User)"})
        if not NAME.fullmatch(user) or not NAME.fullmatch(version):
            return self.reply(400, {"error": "bad user or model name"})

        with otel_audit.enduser(user):  # the accesses below are on record as made for this user
            try:
                model = self.models.get(version)
            except FileNotFoundError:
                return self.reply(404, {"error": f"no model version {version}"})
            try:
                accounts = pd.read_csv(self.features / f"{user}.csv")
            except FileNotFoundError:
                return self.reply(404, {"error": f"no accounts for {user}"})

        risk = model.predict_proba(accounts[FEATURES])[:, 1]
        self.reply(200, {"user": user, "model": version,
                         "churn_risk": dict(zip(accounts["account"], risk.round(3).tolist()))})

    def reply(self, status: int, payload: dict) -> None:
        trace.get_current_span().set_attribute("http.response.status_code", status)
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve churn scores over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--models", type=Path, default=Path("models"), help="holds churn-<version>.joblib")
    parser.add_argument("--features", type=Path, default=Path("features"), help="holds <user>.csv")
    parser.add_argument("--default-model", default="v1", help="loaded at startup")
    args = parser.parse_args()

    Handler.models = Models(args.models)
    Handler.models.get(args.default_model)  # fail at startup, not on the first request, if it is missing
    Handler.features, Handler.default_model = args.features, args.default_model

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"serving on http://{args.host}:{server.server_port}", flush=True)
    # Stop on SIGTERM (docker stop, Kubernetes, systemd) as on Ctrl-C: a normal interpreter exit,
    # so exit handlers run and deliver the last telemetry (otel-audit's records among it).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
