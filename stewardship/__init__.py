"""The steward's workbench: the services that change reference rows (promote, complete, merge, undo, feedback) and
the reference admin that calls them; may import pipeline, reference and refgov."""
