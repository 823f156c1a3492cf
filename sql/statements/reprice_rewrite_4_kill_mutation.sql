-- Cancels a re-pricing rewrite that failed (streams/reprice.py): a mutation that cannot finish
-- would stay queued, retried forever, and hold back every later mutation of the table.
KILL MUTATION WHERE database = {database:String} AND table = 'spans' AND position(command, {join:String}) > 0 SYNC
