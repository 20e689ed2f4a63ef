"""Deployment-side observability: the Prometheus scrape configuration and the metric names
that the alert rules and the Grafana dashboard query. No service imports this package."""
