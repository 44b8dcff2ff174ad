"""Running refgov — schedules, q tasks, the fact window, periodic alert checks, the dashboard, run history, the run
records' admin and the management commands; may import pipeline, reference and refgov."""
