"""The minute-window contract between the ingest stage (which aggregates and emits windows to
``metrics``) and the alerting stage (which merges them into whole minutes): the columns, the
aggregation, the record encoding and the merger."""
