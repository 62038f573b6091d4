"""The update server: Omaha endpoint with Nebraska's rollout semantics, admin API, dashboard."""
