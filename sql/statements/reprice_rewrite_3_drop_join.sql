-- Drops a re-pricing chunk's Join table once its spans are rewritten (streams/reprice.py).
DROP TABLE IF EXISTS ${database}.${join}
