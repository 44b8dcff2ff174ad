"""The reference tables (models, registry, change history, integrity checks, permissions and read-only selectors);
may import refgov only, never another app."""
