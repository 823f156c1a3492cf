"""One request as a waterfall: fetch a trace's spans (:mod:`.fetch`), build its tree, critical
path and totals (:mod:`.tree`). The CLI, the static report and the alert pages all use these."""
