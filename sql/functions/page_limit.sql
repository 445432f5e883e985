-- The page size rule of every list (admin lists, contract §11; the change feed, §9), written once.
CREATE OR REPLACE FUNCTION control_plane.page_limit(p_limit integer)
    RETURNS integer
    LANGUAGE plpgsql
    IMMUTABLE
    SET search_path = control_plane, pg_catalog, pg_temp
AS $fn$
BEGIN
    IF p_limit IS NULL THEN
        RETURN 100;
    END IF;
    IF p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'limit must be an integer from 1 to 1000' USING ERRCODE = 'CP400';
    END IF;
    RETURN p_limit;
END
$fn$;
COMMENT ON FUNCTION control_plane.page_limit(integer) IS
    'Internal: the page size of every list (admin lists; the feed, which refuses NULL first): '
    'NULL → 100 (the default), 1..1000 as given, '
    'anything else → CP400 (request.invalid). Not granted to any role.';
