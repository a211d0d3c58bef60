"""Host-side runtime: engine switch-on, per-step plans, request programs."""
