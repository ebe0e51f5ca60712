-- Which domains the issuer has work for, defined once (issue 15): the run claims from this view,
-- --dry-run lists it, a lingering run wakes on it, the metrics file counts it
-- (tracktls_issuer_pending), and operators query it. A dormant domain is due for its daily
-- preflight. The view reads domains alone, so a run can lock its rows through it
-- (FOR NO KEY UPDATE ... SKIP LOCKED), and its condition is the partial index domains_due's.
CREATE VIEW due_domains AS
SELECT d.id,
       d.name,
       d.state,
       d.current_cert_id,
       d.profile,
       d.next_attempt_at,
       CASE WHEN d.current_cert_id IS NULL THEN 'new' ELSE 'renewal' END AS kind
FROM domains d
WHERE d.state IN ('pending', 'active', 'failing', 'dormant') AND d.next_attempt_at <= now();

-- An authorization the CA's validator left pending past the issuer's poll limit is the domain's
-- failure (its host took the validator's connections and never answered): validation_failed.
CREATE OR REPLACE FUNCTION tracktls_reason(error_type text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
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
                        'urn:ietf:params:acme:error:tls', 'urn:tracktls:authorizationPending')
        THEN 'validation_failed'
    WHEN error_type IN ('transport', 'timeout', 'urn:ietf:params:acme:error:serverInternal',
                        'urn:ietf:params:acme:error:accountDoesNotExist') THEN 'ca_unavailable'
    ELSE 'internal'
END $$;
