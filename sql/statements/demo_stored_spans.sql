-- How many spans are stored (spanline/demo.py waits for the replayed ones).
SELECT count() FROM ${database}.spans
