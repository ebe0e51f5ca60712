-- The platform's contract: the domain_status view (one row per domain, the one place it reads) and
-- the domain_events table it consumes exactly once (LISTEN tracktls_domain_event, payload = id).

-- When domains.state last changed (the view's `since`), and which certificate the edge was seen
-- serving (https_ready: a TLS handshake through the edge returned it and its chain verified).
ALTER TABLE domains
    ADD COLUMN state_since timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN served_cert_id bigint REFERENCES certificates(id) ON DELETE SET NULL,
    ADD COLUMN served_checked_at timestamptz;
UPDATE domains SET state_since = COALESCE(removed_at, last_error_at, added_at);

CREATE FUNCTION tracktls_state_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.state_since := now();
    RETURN NEW;
END $$;
CREATE TRIGGER domains_state_since BEFORE UPDATE OF state ON domains
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION tracktls_state_since();

-- The one place a stored error type (an ACME problem type, one of ours, or a preflight code)
-- becomes a reason code of the closed set documented in README.md.
CREATE FUNCTION tracktls_reason(error_type text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT CASE
    WHEN error_type IS NULL THEN NULL
    WHEN error_type IN ('dns_not_pointed', 'dns_stray_aaaa', 'caa_forbids_ca', 'dns_servfail') THEN error_type
    WHEN error_type = 'urn:tracktls:selfCheckFailed' THEN 'dns_not_pointed'
    WHEN error_type IN ('rateLimited', 'urn:ietf:params:acme:error:rateLimited') THEN 'ca_rate_limited'
    WHEN error_type = 'urn:ietf:params:acme:error:caa' THEN 'caa_forbids_ca'
    WHEN error_type IN ('urn:ietf:params:acme:error:rejectedIdentifier',
                        'urn:ietf:params:acme:error:unsupportedIdentifier') THEN 'name_rejected'
    WHEN error_type IN ('urn:ietf:params:acme:error:connection', 'urn:ietf:params:acme:error:dns')
        THEN 'challenge_unreachable'
    WHEN error_type IN ('urn:ietf:params:acme:error:unauthorized', 'urn:ietf:params:acme:error:incorrectResponse',
                        'urn:ietf:params:acme:error:tls') THEN 'validation_failed'
    WHEN error_type IN ('transport', 'timeout', 'urn:ietf:params:acme:error:serverInternal',
                        'urn:ietf:params:acme:error:accountDoesNotExist') THEN 'ca_unavailable'
    ELSE 'internal'
END $$;

CREATE VIEW domain_status AS
SELECT d.name,
       d.owner,
       st.state,
       (sc.id IS NOT NULL AND sc.not_after > now() AND d.state <> 'removed') AS https_ready,
       tracktls_reason(d.last_error_type) AS reason,
       d.last_error_detail AS detail,
       c.serial,
       c.not_after,
       CASE WHEN c.id IS NOT NULL AND d.state NOT IN ('removed', 'paused', 'dormant') THEN d.next_attempt_at END
           AS renew_at,
       CASE st.state
           WHEN 'validating' THEN a.started_at
           WHEN 'failed' THEN COALESCE(d.last_error_at, d.state_since)
           WHEN 'renewing' THEN CASE WHEN d.state = 'failing' THEN d.state_since ELSE a.started_at END
           WHEN 'expiring' THEN GREATEST(d.state_since, c.not_after - interval '7 days')
           WHEN 'active' THEN GREATEST(d.state_since, c.created_at)
           ELSE d.state_since
       END AS since
FROM domains d
LEFT JOIN certificates c ON c.id = d.current_cert_id
LEFT JOIN certificates sc ON sc.id = d.served_cert_id
LEFT JOIN LATERAL (SELECT max(x.started_at) AS started_at FROM issuance_attempts x
                   WHERE x.domain_id = d.id AND x.state = 'started') a ON true
CROSS JOIN LATERAL (SELECT CASE
    WHEN d.state IN ('removed', 'paused', 'dormant') THEN d.state
    WHEN c.id IS NULL OR c.not_after <= now() THEN
        CASE WHEN a.started_at IS NOT NULL THEN 'validating'
             WHEN d.state = 'failing' THEN 'failed'
             ELSE 'pending' END
    WHEN d.state = 'failing' AND c.not_after < now() + interval '7 days' THEN 'expiring'
    WHEN d.state = 'failing' OR a.started_at IS NOT NULL THEN 'renewing'
    ELSE 'active'
END AS state) st;

CREATE TABLE domain_events (
    id     bigserial PRIMARY KEY,
    name   text NOT NULL,
    owner  text,
    kind   text NOT NULL CHECK (kind IN ('added', 'validating', 'renewing', 'issued', 'https_ready', 'renewed',
                                         'failed', 'paused', 'resumed', 'expiring', 'removed')),
    reason text,
    detail text,
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domain_events_at ON domain_events (at);

-- Writes one event for a domain in the caller's transaction, which must commit right after: the
-- transaction-scoped lock taken before the id is drawn is held until commit, so ids become visible
-- in id order and a reader that has seen id N never sees a smaller one appear later.
-- Failure kinds carry the domain's current reason and detail.
CREATE FUNCTION tracktls_domain_event(domain bigint, event_kind text, event_detail text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE e bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tracktls_domain_events'));
    INSERT INTO domain_events (name, owner, kind, reason, detail)
        SELECT d.name, d.owner, event_kind,
               CASE WHEN event_kind IN ('failed', 'paused', 'expiring') THEN tracktls_reason(d.last_error_type) END,
               COALESCE(event_detail,
                        CASE WHEN event_kind IN ('failed', 'paused', 'expiring') THEN d.last_error_detail END)
        FROM domains d WHERE d.id = domain
        RETURNING id INTO e;
    IF e IS NOT NULL THEN PERFORM pg_notify('tracktls_domain_event', e::text); END IF;
    RETURN e;
END $$;
