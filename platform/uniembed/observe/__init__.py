"""Watching a job: stage names for the Ray Data view, a compact driver progress line, the
job's figures as Ray metrics and in its status, the dashboard address."""
