"""Moving data — config, sources, the preload, fact loading (inbox, staging, usage weights), run and batch records,
alerts, notifiers, review reports and share snapshots; may import reference and refgov."""
