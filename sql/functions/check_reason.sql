-- The one rule for a request's reason (contract §6: detach, revoke, healthChanges.reason).
CREATE OR REPLACE FUNCTION control_plane.check_reason(p_reason text, p_field text)
    RETURNS void
    LANGUAGE plpgsql
    IMMUTABLE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    IF p_reason IS NOT NULL AND (char_length(p_reason) NOT BETWEEN 1 AND 512
                                 OR p_reason !~ '[^[:space:]]') THEN
        RAISE EXCEPTION '% must be 1 to 512 characters, not blank', p_field
            USING ERRCODE = 'CP400';
    END IF;
END
$fn$;
COMMENT ON FUNCTION control_plane.check_reason(text, text) IS
    'Internal: CP400 ''<p_field> must be 1 to 512 characters, not blank'' unless p_reason is NULL '
    'or 1-512 characters with at least one non-space.';
REVOKE ALL ON FUNCTION control_plane.check_reason(text, text) FROM PUBLIC;
