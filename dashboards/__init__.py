"""Grafana dashboards and alert rules as code; built in the Grafana issue."""
