"""Grafana dashboards and alert rules as code: `sql` (panel queries), `variables`, `boards`
(layout), `rules` (Grafana-managed alert rules), `build` (documents and provisioning files),
`sync` (`cxpulse grafana sync`)."""
