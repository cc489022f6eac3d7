"""Optional services: objects served by a daemon, built only on Ember's public client/server API."""
