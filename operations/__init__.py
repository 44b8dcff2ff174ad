"""Running refgov: schedules, q tasks, the fact window, periodic alert checks, the dashboard, run history and the
management commands. May import pipeline, reference and refgov."""
