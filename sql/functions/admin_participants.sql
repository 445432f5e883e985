CREATE OR REPLACE FUNCTION control_plane.admin_create_participant(p_display_name text DEFAULT NULL)
    RETURNS jsonb
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id uuid;
BEGIN
    IF p_display_name IS NOT NULL AND char_length(p_display_name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'displayName must be 1 to 200 characters' USING ERRCODE = 'CP400';
    END IF;
    INSERT INTO participants (display_name) VALUES (p_display_name) RETURNING id INTO v_id;
    RETURN jsonb_build_object('participantId', v_id);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_create_participant(text) IS
    'Admin: creates a participant and returns {participantId}. Callers must hold admin authority '
    '(the HTTP tier checks the admin token; DBAs call it directly).';
GRANT EXECUTE ON FUNCTION control_plane.admin_create_participant(text) TO control_plane_api;

CREATE OR REPLACE FUNCTION control_plane.admin_issue_token(
    p_participant_id uuid,
    p_label text DEFAULT NULL,
    p_expires_in_seconds integer DEFAULT NULL
)
    RETURNS jsonb
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_secret bytea;
    v_token text;
    v_row participant_tokens;
BEGIN
    IF p_label IS NOT NULL AND char_length(p_label) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'label must be 1 to 200 characters' USING ERRCODE = 'CP400';
    END IF;
    IF p_expires_in_seconds IS NOT NULL AND p_expires_in_seconds < 1 THEN
        RAISE EXCEPTION 'expiresInSeconds must be at least 1' USING ERRCODE = 'CP400';
    END IF;
    PERFORM 1 FROM participants WHERE id = p_participant_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'participant not found' USING ERRCODE = 'CPN04';
    END IF;
    -- 32 bytes from the server's strong random source (gen_random_uuid uses pg_strong_random):
    -- three v4 UUIDs carry 366 random bits, condensed by SHA-256 into 256 uniform bits.
    -- Built-ins only, so no extension (and no extension schema) is needed.
    v_secret := sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
                       || uuid_send(gen_random_uuid()));
    v_token := 'cpt_' || rtrim(translate(encode(v_secret, 'base64'), '+/', '-_'), '=');
    INSERT INTO participant_tokens (participant_id, token_sha256, label, expires_at)
    VALUES (p_participant_id, sha256(convert_to(v_token, 'UTF8')), p_label,
            now() + make_interval(secs => p_expires_in_seconds))
    RETURNING * INTO v_row;
    RETURN jsonb_build_object('tokenId', v_row.id, 'token', v_token, 'expiresAt', v_row.expires_at);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_issue_token(uuid, text, integer) IS
    'Admin: issues a bearer token for a participant and returns {tokenId, token, expiresAt}. The '
    'token (cpt_ + base64url of 32 random bytes) is shown once; only its SHA-256 digest is stored. '
    'Unknown participant → CPN04 (not_found).';
GRANT EXECUTE ON FUNCTION control_plane.admin_issue_token(uuid, text, integer) TO control_plane_api;

CREATE OR REPLACE FUNCTION control_plane.admin_revoke_token(p_token_id uuid)
    RETURNS void
    LANGUAGE plpgsql
    VOLATILE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE participant_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = p_token_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'token not found' USING ERRCODE = 'CPN04';
    END IF;
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_revoke_token(uuid) IS
    'Admin: revokes a participant token (effective on its next request; revoking twice keeps the '
    'first revocation time). Unknown token id → CPN04 (not_found).';
GRANT EXECUTE ON FUNCTION control_plane.admin_revoke_token(uuid) TO control_plane_api;
