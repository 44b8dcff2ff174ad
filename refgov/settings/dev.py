"""Local development and the README demo: debug on, a fixed development key (never used in production)."""

from .base import *  # noqa: F401,F403
from .base import env

DEBUG = True
SECRET_KEY = env("DJANGO_SECRET_KEY", "dev-only-insecure-key-refgov-not-for-production")
