-- Benchmark data, made through the product's own SQL functions (as the superuser, like a DBA in
-- psql): participants, real bearer tokens, sessions, active memberships, attached and declared
-- nodes. What the load generators need (tokens, node ids) is kept in schema `bench`, never in
-- `control_plane`. Idempotent: a second run re-attaches the same nodes (same owner → the slot
-- goes back to registering, id and attached_at kept) instead of creating new ones.
--
-- psql variables: beat_sessions, nodes_per_session, nodes_per_participant, attach_nodes.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS bench;

-- One row per bench node. kind: beat (heartbeat/roster fleet) | attach (attach benchmark).
CREATE TABLE IF NOT EXISTS bench.nodes (
    i              integer NOT NULL,
    kind           text NOT NULL,
    node_id        text NOT NULL UNIQUE,
    token          text NOT NULL,
    digest         bytea NOT NULL,
    participant_id uuid NOT NULL,
    session_id     uuid NOT NULL,
    PRIMARY KEY (kind, i)
);

CREATE OR REPLACE FUNCTION bench.seed_fleet(
    p_kind text, p_sessions integer, p_per_session integer, p_per_participant integer
) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    v_have integer;
    v_session uuid;
    v_participant uuid;
    v_token text;
    v_i integer := 0;
BEGIN
    -- A fleet whose tokens, memberships and sessions are all still valid is reused.
    SELECT count(*) INTO v_have
      FROM bench.nodes n
      JOIN control_plane.participant_tokens t ON t.token_sha256 = n.digest
      JOIN control_plane.session_memberships m
        ON m.session_id = n.session_id AND m.participant_id = n.participant_id
      JOIN control_plane.sessions s ON s.id = n.session_id
     WHERE n.kind = p_kind AND t.revoked_at IS NULL AND t.expires_at IS NULL
       AND m.state = 'active' AND s.state = 'active';
    IF v_have = p_sessions * p_per_session
       AND v_have = (SELECT count(*) FROM bench.nodes WHERE kind = p_kind) THEN
        RETURN 0;
    END IF;
    DELETE FROM bench.nodes WHERE kind = p_kind;  -- stale (another database state): start over
    FOR s IN 1..p_sessions LOOP
        v_session := (control_plane.admin_create_session('1.0') ->> 'sessionId')::uuid;
        FOR p IN 1..(p_per_session / p_per_participant) LOOP
            v_participant := (control_plane.admin_create_participant(
                                  format('bench %s %s.%s', p_kind, s, p)) ->> 'participantId')::uuid;
            v_token := control_plane.admin_issue_token(v_participant, 'bench') ->> 'token';
            PERFORM control_plane.admin_put_membership(
                v_session, v_participant, CASE p WHEN 1 THEN 'owner' ELSE 'runtime_contributor' END,
                'active');
            FOR k IN 1..p_per_participant LOOP
                v_i := v_i + 1;
                INSERT INTO bench.nodes
                VALUES (v_i, p_kind, format('bn-%s-%s', p_kind, md5(p_kind || v_i)), v_token,
                        sha256(convert_to(v_token, 'UTF8')), v_participant, v_session);
            END LOOP;
        END LOOP;
    END LOOP;
    RETURN v_i;
END
$fn$;

-- (Re-)attach and declare every node of a fleet through the product functions.
CREATE OR REPLACE FUNCTION bench.attach_fleet(p_kind text, p_declare boolean) RETURNS integer
    LANGUAGE plpgsql
AS $fn$
DECLARE
    v_n integer := 0;
    r record;
BEGIN
    FOR r IN SELECT * FROM bench.nodes WHERE kind = p_kind ORDER BY i LOOP
        PERFORM control_plane.runtime_node_attach(
            r.digest, r.session_id, r.participant_id, r.node_id, '1.4',
            jsonb_build_object('os', 'linux', 'arch', 'x86_64', 'cpus', 16, 'memoryMiB', 65536,
                               'tools', jsonb_build_array('git', 'python3.11', 'node20', 'cargo'),
                               'sandbox', 'bwrap'));
        IF p_declare THEN
            PERFORM control_plane.runtime_node_declare(
                r.digest, r.node_id,
                jsonb_build_object('os', 'linux', 'arch', 'x86_64', 'cpus', 16,
                                   'tools', jsonb_build_array('git', 'python3.11', 'node20')));
        END IF;
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END
$fn$;

SELECT bench.seed_fleet('beat', :beat_sessions, :nodes_per_session, :nodes_per_participant)
       AS new_beat_nodes;
SELECT bench.seed_fleet('attach', greatest(1, :attach_nodes / :nodes_per_session),
                        least(:attach_nodes, :nodes_per_session), :nodes_per_participant)
       AS new_attach_nodes;
SELECT bench.attach_fleet('beat', true) AS attached_beat_nodes;

-- Every beat node has a presence row (its first heartbeat), so the benchmark measures the
-- steady state: updates of existing rows, as in production.
SELECT count(*) FILTER (WHERE s IS NULL) AS first_beats_ok, count(*) FILTER (WHERE s IS NOT NULL) AS refused
  FROM unnest((SELECT control_plane.runtime_node_heartbeat_batch(
                          array_agg(digest ORDER BY i), array_agg(node_id ORDER BY i),
                          array_fill('online'::text, ARRAY[count(*)::int]))
                 FROM bench.nodes WHERE kind = 'beat')) s;
ANALYZE bench.nodes;

-- Prepared batches for bench/sql/heartbeat_batch.pgbench: for each size, 200 batches of
-- distinct random beat nodes (as the coalescer sends them: any order, one item per request).
CREATE TABLE IF NOT EXISTS bench.batches (
    size     integer NOT NULL,
    k        integer NOT NULL,
    digests  bytea[] NOT NULL,
    node_ids text[] NOT NULL,
    healths  text[] NOT NULL,
    PRIMARY KEY (size, k)
);
TRUNCATE bench.batches;
INSERT INTO bench.batches
SELECT s.size, k.k, array_agg(n.digest ORDER BY n.r), array_agg(n.node_id ORDER BY n.r),
       array_agg('online'::text)
  FROM unnest(ARRAY[1, 4, 16, 64, 256]) s(size)
 CROSS JOIN generate_series(1, 200) k(k)
 CROSS JOIN LATERAL (
        SELECT nn.digest, nn.node_id, random() AS r
          FROM bench.nodes nn
         WHERE nn.kind = 'beat' AND nn.i IN (
               SELECT DISTINCT 1 + ((k.k * 7919 + g * 104729 + s.size) % (SELECT count(*) FROM bench.nodes WHERE kind = 'beat'))::int
                 FROM generate_series(1, s.size) g)
       ) n
 GROUP BY s.size, k.k;
ANALYZE bench.batches;
