"""Runs a job's calls, one user-level call per entry, for the access-point tests (tests/jobs.py).

``python job.py DIR setup`` makes the files the calls work on (always run without otel-audit).
``python job.py DIR`` then makes each call and prints what it returned (plain values as they are, other
objects by type name, so that a plain and an audited run can be compared).  ``python job.py DIR closed``
makes each call expecting otel-audit to refuse it (fail-closed with an unwritable spool) and prints, per
call, ``refused`` or what happened instead; ``python job.py DIR denied`` the same under an access policy
that denies everything (``denied``: it raised ``otel_audit.AccessDenied``).
"""
import sys

PLAIN_TYPES = (int, float, str, bool, type(None), list, tuple, dict)


def shown(value):
    return repr(value) if isinstance(value, PLAIN_TYPES) else type(value).__name__


def run(calls, setup=None):
    mode = sys.argv[2] if len(sys.argv) > 2 else "calls"
    if mode == "setup":
        if setup is not None:
            setup()
        return
    for call in calls:
        if mode not in ("closed", "denied"):
            print(shown(call()))
            continue
        try:
            call()
            print("PROCEEDED")
        except PermissionError as exc:
            if mode == "denied":  # the access policy refused it (otel_audit.AccessDenied)
                print("denied" if type(exc).__name__ == "AccessDenied" else f"other PermissionError: {exc}")
            else:
                print("refused" if "could not be audited" in str(exc) else f"other PermissionError: {exc}")
        except Exception as exc:  # noqa: BLE001 - the test shows what happened instead
            print(f"other: {type(exc).__name__}: {exc}")
