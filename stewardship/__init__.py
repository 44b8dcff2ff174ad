"""The steward's workbench: services that change reference rows (promote, complete, merge, undo, feedback) and the
reference admin that calls them. May import pipeline, reference and refgov."""
