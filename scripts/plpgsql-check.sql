-- Every finding plpgsql_check has for the PL/pgSQL functions and procedures in schema
-- control_plane: errors, warnings, extra and performance warnings (hidden casts, dynamic SQL,
-- ...). A trigger function is checked against the table of each trigger that calls it.
-- `make lint` fails when this returns a row. Needs the plpgsql_check extension (schema
-- plpgsql_check) in the lint database.
SELECT p.oid::regprocedure AS function, t.level, t.sqlstate, t.lineno, t.statement,
       t.message, t.detail, t.hint, t.query
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'control_plane'
  JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
  LEFT JOIN pg_trigger tg ON tg.tgfoid = p.oid AND NOT tg.tgisinternal
 CROSS JOIN LATERAL plpgsql_check.plpgsql_check_function_tb(
         p.oid,
         COALESCE(tg.tgrelid, 0),
         performance_warnings => true,
         extra_warnings => true,
         security_warnings => true) t
 ORDER BY 1::text, t.lineno;
