"""Users, API tokens and (later) projects, OIDC and audit: one authorization layer."""
