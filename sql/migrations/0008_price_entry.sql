-- Which price entry priced each span: `catalog:<genai-prices version>`, `correction:<id>` (the
-- reviewed corrections in streams/pricing/corrections.yaml) or `override:<n>` (entry n of the
-- overrides file); '' when nothing priced it. price_source and price_version say which layer and
-- which file; this names the one entry, so `spanline prices show` can explain any stored cost.
-- The rollups select their columns by name and do not need it.
ALTER TABLE ${database}.spans
    ADD COLUMN IF NOT EXISTS price_entry LowCardinality(String) DEFAULT ''
    AFTER price_version;
