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
    'Admin: creates a participant and returns {participantId}. Executable by control_plane_admin '
    'only (the HTTP tier''s admin pool, after the admin token check; DBAs call it directly).';
GRANT EXECUTE ON FUNCTION control_plane.admin_create_participant(text) TO control_plane_admin;

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
GRANT EXECUTE ON FUNCTION control_plane.admin_issue_token(uuid, text, integer) TO control_plane_admin;

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
GRANT EXECUTE ON FUNCTION control_plane.admin_revoke_token(uuid) TO control_plane_admin;

-- contract §11: participants in creation order, one keyset page at a time.
CREATE OR REPLACE FUNCTION control_plane.admin_list_participants(
    p_limit integer DEFAULT 100,
    p_after uuid DEFAULT NULL
)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_limit integer := page_limit(p_limit);  -- CP400
    -- Before every row: the first page.
    v_after_at timestamptz := '-infinity'::timestamptz;
    v_after_id uuid := '00000000-0000-0000-0000-000000000000'::uuid;
    v_ids uuid[];
BEGIN
    IF p_after IS NOT NULL THEN
        SELECT created_at, id INTO v_after_at, v_after_id FROM participants WHERE id = p_after;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'after must be the id of a listed participant' USING ERRCODE = 'CP400';
        END IF;
    END IF;
    -- One row more than the page says whether there is a next page.
    v_ids := ARRAY(SELECT p.id FROM participants p
                    WHERE (p.created_at, p.id) > (v_after_at, v_after_id)
                    ORDER BY p.created_at, p.id
                    LIMIT v_limit + 1);
    RETURN jsonb_build_object(
        'items', coalesce((
            SELECT jsonb_agg(jsonb_build_object('participantId', p.id,
                                                'displayName', p.display_name,
                                                'createdAt', p.created_at) ORDER BY u.n)
              FROM unnest(v_ids[1:v_limit]) WITH ORDINALITY u (id, n)
              JOIN participants p ON p.id = u.id), '[]'::jsonb),
        'next', CASE WHEN cardinality(v_ids) > v_limit THEN v_ids[v_limit] END);
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_list_participants(integer, uuid) IS
    'Admin: one page of participants ordered by (created_at, id): {items: [{participantId, '
    'displayName, createdAt}], next}. p_limit 1..1000 (NULL → 100), else CP400. next is the id to '
    'pass as p_after for the following page, null on the last page; p_after that is no '
    'participant''s id → CP400. Keyset, so a walk never repeats or skips a participant that '
    'existed throughout it, whatever is created meanwhile. Reads one snapshot, takes no lock.';
GRANT EXECUTE ON FUNCTION control_plane.admin_list_participants(integer, uuid)
    TO control_plane_admin;

-- contract §11: one participant with its tokens' metadata (never the secret or its digest).
CREATE OR REPLACE FUNCTION control_plane.admin_get_participant(p_participant_id uuid)
    RETURNS jsonb
    LANGUAGE plpgsql
    STABLE SECURITY DEFINER
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
DECLARE
    v_row participants;
BEGIN
    SELECT * INTO v_row FROM participants WHERE id = p_participant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'participant not found' USING ERRCODE = 'CPN04';
    END IF;
    RETURN jsonb_build_object(
        'participantId', v_row.id,
        'displayName', v_row.display_name,
        'createdAt', v_row.created_at,
        'tokens', coalesce((
            SELECT jsonb_agg(jsonb_build_object('tokenId', t.id,
                                                'label', t.label,
                                                'createdAt', t.created_at,
                                                'expiresAt', t.expires_at,
                                                'revokedAt', t.revoked_at)
                             ORDER BY t.created_at, t.id)
              FROM participant_tokens t WHERE t.participant_id = v_row.id), '[]'::jsonb));
END
$fn$;
COMMENT ON FUNCTION control_plane.admin_get_participant(uuid) IS
    'Admin: {participantId, displayName, createdAt, tokens: [{tokenId, label, createdAt, '
    'expiresAt, revokedAt}]} — every token ever issued to the participant, oldest first, '
    'including expired and revoked ones; never the secret or its digest. Unknown participant → '
    'CPN04 (not_found).';
GRANT EXECUTE ON FUNCTION control_plane.admin_get_participant(uuid) TO control_plane_admin;
