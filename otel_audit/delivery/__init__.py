"""The delivery stage: from a finished record to an acknowledged one.

* :mod:`~otel_audit.delivery.spool` -- the write-ahead spool on local disk
  (CRC-framed segments, ``flock`` ownership, per-exporter acknowledgements);
* :mod:`~otel_audit.delivery.shipper` -- durable delivery: the shipper thread,
  orphan recovery, what ``otel-audit flush`` runs;
* :mod:`~otel_audit.delivery.sink` -- the embedded ``audit_file`` exporter;
* :mod:`~otel_audit.delivery.ownfiles` -- opening otel-audit's own files and
  directories safely (owner-only modes, ownership checks, descriptors verified
  before every write).
"""
