"""Set-based value parsing used by the preload: each returns NULL for blank or unparseable input, never raises."""

from django.db import migrations

from reference.schema_ops import use_business_schema

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION refgov_norm_key(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT NULLIF(upper(btrim(normalize(v, NFKC), E' \t\r\n')), '')
$$;

CREATE OR REPLACE FUNCTION refgov_clean_text(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT NULLIF(btrim(v, E' \t\r\n'), '')
$$;

CREATE OR REPLACE FUNCTION refgov_parse_int(v text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN btrim(v) ~ '^[-+]?[0-9]{1,9}(\.0*)?$' THEN split_part(btrim(v), '.', 1)::integer END
$$;

CREATE OR REPLACE FUNCTION refgov_parse_bool(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN lower(btrim(v)) IN ('1', 'true', 't', 'y', 'yes', '是') THEN true
    WHEN lower(btrim(v)) IN ('0', 'false', 'f', 'n', 'no', '否') THEN false
  END
$$;

CREATE OR REPLACE FUNCTION refgov_parse_date(v text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN v ~ '^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}'
     AND substr(btrim(v), 1, 4) > '0000'
     AND substr(btrim(v), 6, 2) BETWEEN '01' AND '12'
     AND substr(btrim(v), 9, 2) >= '01'
     AND substr(btrim(v), 9, 2)::int <= extract(day from
           make_date(substr(btrim(v), 1, 4)::int, substr(btrim(v), 6, 2)::int, 1)
           + interval '1 month - 1 day')::int
    THEN substr(btrim(v), 1, 10)::date
  END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS refgov_norm_key(text);
DROP FUNCTION IF EXISTS refgov_clean_text(text);
DROP FUNCTION IF EXISTS refgov_parse_int(text);
DROP FUNCTION IF EXISTS refgov_parse_bool(text);
DROP FUNCTION IF EXISTS refgov_parse_date(text);
"""


class Migration(migrations.Migration):
    dependencies = [("reference", "0001_initial")]

    operations = [use_business_schema(), migrations.RunSQL(FUNCTIONS, DROP)]
