"""Cost enrichment: prices spans from genai-prices' offline snapshot, the project's price corrections
(``corrections.yaml``) and per-tenant overrides.

``PriceCatalog.load(overrides_file)`` once per process, then ``catalog.price(spans)`` per batch.
"""

from spanline.streams.pricing.catalog import PRICE_COLUMNS, PriceCatalog

__all__ = ["PRICE_COLUMNS", "PriceCatalog"]
