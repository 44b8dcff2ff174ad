"""Production: every secret and host from the environment; HTTPS-only cookies and HSTS."""

from .base import *  # noqa: F401,F403
from .base import env, env_bool

SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = False

# Only behind a TLS-terminating proxy that sets X-Forwarded-Proto itself (and strips it from clients): otherwise any
# client could claim HTTPS with that header.
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = int(env("DJANGO_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = [o for o in env("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]
