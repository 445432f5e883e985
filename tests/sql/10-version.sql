-- The client_version domain (contract §3) and its numeric comparison: version_compare,
-- version_below_floor.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SET search_path = control_plane, public, pg_catalog;

SELECT plan(56);

-- The domain -------------------------------------------------------------------------------------
SELECT has_domain('control_plane', 'client_version', 'client_version is a domain');
SELECT domain_type_is('control_plane', 'client_version', 'text', 'over text');

SELECT lives_ok($$SELECT '1.0'::control_plane.client_version$$, 'accepts 1.0');
SELECT lives_ok($$SELECT '0.0'::control_plane.client_version$$, 'accepts 0.0');
SELECT lives_ok($$SELECT '10.20'::control_plane.client_version$$, 'accepts 10.20');
SELECT lives_ok($$SELECT '123456789012345678901234567890.1'::control_plane.client_version$$,
                'accepts a major far beyond bigint');
SELECT lives_ok(format('SELECT %L::control_plane.client_version', repeat('9', 31) || '.' || repeat('9', 32)),
                'accepts exactly 64 characters');

-- Each rejection must be the domain's own CHECK (23514), not some other failure.
SELECT throws_ok(format('SELECT %L::control_plane.client_version', v), '23514', NULL,
                 format('rejects %s', d))
  FROM (VALUES ('1', '1 (no minor)'),
               ('1.0.0', '1.0.0 (three segments)'),
               ('01.0', '01.0 (leading zero in major)'),
               ('1.01', '1.01 (leading zero in minor)'),
               ('', 'the empty string'),
               (' 1.0', 'a leading space'),
               ('1.0 ', 'a trailing space'),
               (E'1.0\n', 'a trailing newline'),
               (E'\n1.0', 'a leading newline'),
               ('1.', '1. (empty minor)'),
               ('.1', '.1 (empty major)'),
               ('-1.0', 'a negative major'),
               ('+1.0', 'a plus sign'),
               ('1.0a', 'a letter'),
               ('v1.0', 'a v prefix'),
               ('1,0', 'a comma'),
               ('１.０', 'full-width digits'),
               (repeat('9', 32) || '.' || repeat('9', 32), 'over 64 characters'))
       AS t(v, d);

SELECT is(NULL::control_plane.client_version, NULL, 'NULL is a valid (absent) version');

-- version_compare ------------------------------------------------------------------------------
SELECT has_function('control_plane', 'version_compare', ARRAY['text', 'text'],
                    'version_compare(text, text) exists');
SELECT volatility_is('control_plane', 'version_compare', ARRAY['text', 'text'], 'immutable',
                     'version_compare is IMMUTABLE');
SELECT is(version_compare('10.0', '9.0'), 1, '10.0 > 9.0 (numeric, not textual)');
SELECT is(version_compare('9.0', '10.0'), -1, '9.0 < 10.0');
SELECT is(version_compare('1.10', '1.9'), 1, '1.10 > 1.9');
SELECT is(version_compare('1.9', '1.10'), -1, '1.9 < 1.10');
SELECT is(version_compare('1.2', '1.2'), 0, 'equal versions compare 0');
SELECT is(version_compare('0.0', '0.0'), 0, '0.0 = 0.0');
SELECT is(version_compare('2.0', '1.999'), 1, 'the major decides before the minor');
SELECT is(version_compare('0.1', '0.0'), 1, 'the minor decides on equal majors');
SELECT is(version_compare('123456789012345678901234567890.1', '123456789012345678901234567890.0'),
          1, 'arbitrary precision: huge equal majors, minor decides');
SELECT is(version_compare('123456789012345678901234567890.1', '123456789012345678901234567889.9'),
          1, 'arbitrary precision: majors differing in the last of 30 digits');
SELECT is(version_compare('1.123456789012345678901234567891', '1.123456789012345678901234567890'),
          1, 'arbitrary precision in the minor');
SELECT is(version_compare('9223372036854775808.0', '9223372036854775807.0'), 1,
          'beyond bigint: 2^63 > 2^63 - 1');
SELECT is(version_compare(NULL, '1.0'), NULL, 'STRICT: NULL in, NULL out');

-- version_below_floor ---------------------------------------------------------------------------
SELECT is(version_below_floor('1.0', NULL), false, 'no floor: never read-only');
SELECT is(version_below_floor('1.9', '1.10'), true, '1.9 is below a 1.10 floor');
SELECT is(version_below_floor('1.10', '1.10'), false, 'equal to the floor is not below it');
SELECT is(version_below_floor('1.10', '1.9'), false, '1.10 is above a 1.9 floor');
SELECT is(version_below_floor('9.9', '10.0'), true, '9.9 is below a 10.0 floor');
SELECT is(version_below_floor('123456789012345678901234567890.0', '123456789012345678901234567890.1'),
          true, 'arbitrary precision below the floor');

-- version_key: the one definition of the order --------------------------------------------------
SELECT is(version_key('10.2'), ARRAY[10, 2]::numeric[], 'the key is (major, minor) as numerics');
SELECT ok(version_key('1.10') > version_key('1.9') AND version_key('10.0') > version_key('9.0'),
          'keys order numerically, the major first');
SELECT is(version_key(NULL), NULL, 'a NULL version has no key (not {NULL,NULL}, which sorts last)');
SELECT is(version_key_below(version_key('1.9'), version_key('1.10')), true,
          'version_key_below: below the floor''s key');
SELECT is(version_key_below(version_key('1.10'), version_key('1.10')), false,
          'version_key_below: equal is not below');
SELECT is(version_key_below(version_key('0.0'), NULL), false, 'version_key_below: no floor key');
SELECT is((SELECT count(*) FROM (VALUES ('0.0'), ('0.9'), ('1.9'), ('1.10'), ('2.0'), ('10.0'),
                                        ('123456789012345678901234567890.1')) a (v),
                                (VALUES ('0.0'), ('1.10'), ('9.0'), ('123456789012345678901234567890.0')) f (v)
            WHERE version_below_floor(a.v, f.v)
                  IS DISTINCT FROM version_key_below(version_key(a.v), version_key(f.v))
               OR version_below_floor(a.v, f.v) IS DISTINCT FROM (version_compare(a.v, f.v) < 0)),
          0::bigint, 'version_below_floor, version_key_below and version_compare agree');
SELECT is(version_below_floor('1.0', NULL), version_key_below(version_key('1.0'), version_key(NULL)),
          'and agree on a NULL floor');

-- The domain guards storage: a malformed floor can never be stored.
SELECT throws_ok($$INSERT INTO control_plane.sessions (min_client_version) VALUES ('1.0.0')$$,
                 '23514', NULL, 'sessions.min_client_version refuses a malformed literal');

SELECT * FROM finish();
ROLLBACK;
