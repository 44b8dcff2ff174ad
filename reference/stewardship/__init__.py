"""Stewardship services (seed phase 4): promote, complete, merge. Admin actions and views are thin callers."""
