"""Spanline's Grafana dashboards as code (docs/requirements.md §7): panel definitions, the Grafana JSON built
from them with grafana-foundation-sdk, provisioning files, the push command, and the static
HTML report that renders the same panels without Grafana."""
