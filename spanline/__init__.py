"""Spanline: streaming observability and cost analytics for production LLM systems."""
