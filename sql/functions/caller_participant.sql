-- The token rule: a token identifies its participant until it is revoked or expires. Checked
-- inside the same call as the operation (no extra round trip, no cache: a revoked or expired
-- token stops working on its next request).
CREATE OR REPLACE FUNCTION control_plane.token_participant(p_token_sha256 bytea)
    RETURNS uuid
    LANGUAGE plpgsql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
    SET plan_cache_mode = force_generic_plan  -- re-planned on every call otherwise (docs/performance.md)
AS $fn$
BEGIN
    RETURN (SELECT t.participant_id
              FROM participant_tokens t
             WHERE t.token_sha256 = p_token_sha256
               AND t.revoked_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > now()));
END
$fn$;
COMMENT ON FUNCTION control_plane.token_participant(bytea) IS
    'Internal: the participant owning the token whose SHA-256 digest is given, or NULL when the '
    'token is unknown, expired or revoked. Not granted to the API.';
REVOKE ALL ON FUNCTION control_plane.token_participant(bytea) FROM PUBLIC;

CREATE OR REPLACE FUNCTION control_plane.caller_participant(p_token_sha256 bytea)
    RETURNS uuid
    LANGUAGE plpgsql
    STABLE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_participant uuid := token_participant(p_token_sha256);
BEGIN
    IF v_participant IS NULL THEN
        RAISE EXCEPTION 'missing, unknown, expired or revoked bearer token'
            USING ERRCODE = 'CP401';
    END IF;
    RETURN v_participant;
END
$fn$;
COMMENT ON FUNCTION control_plane.caller_participant(bytea) IS
    'Internal: returns the participant owning the token whose SHA-256 digest is given '
    '(token_participant), or raises CP401 (auth.unauthenticated) when it is unknown, expired or '
    'revoked. Not granted to the API.';
