"""Signed emergency alerts (issue 10 point 3): the alerts view and the alert service."""
