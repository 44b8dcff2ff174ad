"""Drop unused pattern indexes; set-based value parsing used by the preload: each returns NULL for blank or
unparseable input, never raises."""

from django.db import migrations

from reference.schema_ops import drop_pattern_indexes, use_business_schema

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION refgov_norm_key(v text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT NULLIF(upper(btrim(
    CASE WHEN octet_length(v) = char_length(v) THEN v ELSE normalize(v, NFKC) END, E' \t\r\n')), '')
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
    WHEN char_length(v) >= 10 AND substr(v, 5, 1) = '-' AND substr(v, 8, 1) = '-'
     AND translate(substr(v, 1, 10), '0123456789', '') = '--'
     AND substr(v, 1, 4) <> '0000'
     AND substr(v, 6, 2) BETWEEN '01' AND '12'
     AND substr(v, 9, 2) >= '01'
     AND substr(v, 9, 2)::int <= CASE substr(v, 6, 2)
           WHEN '02' THEN CASE WHEN (substr(v, 1, 4)::int % 4 = 0 AND substr(v, 1, 4)::int % 100 <> 0)
                                 OR substr(v, 1, 4)::int % 400 = 0 THEN 29 ELSE 28 END
           WHEN '04' THEN 30 WHEN '06' THEN 30 WHEN '09' THEN 30 WHEN '11' THEN 30
           ELSE 31 END
    THEN make_date(substr(v, 1, 4)::int, substr(v, 6, 2)::int, substr(v, 9, 2)::int)
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

    operations = [use_business_schema(), drop_pattern_indexes(), migrations.RunSQL(FUNCTIONS, DROP)]
