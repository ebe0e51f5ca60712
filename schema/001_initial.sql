-- tracktls schema v1: the contract between the issuer (writes) and the terminators (read).

CREATE TABLE domains (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name = lower(name) AND name !~ '\.$' AND length(name) <= 253),
    owner           text,
    -- pending: no certificate yet; active: has one; failing: last attempt failed, backing off;
    -- paused: kept failing, no more orders until its owner fixes it; removed: soft-deleted.
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'active', 'failing', 'paused', 'removed')),
    profile         text,
    current_cert_id bigint,
    -- the issuer orders when now() >= next_attempt_at (new, renewal due, or backoff over)
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    failures        integer NOT NULL DEFAULT 0,
    last_error_type   text,
    last_error_detail text,
    last_error_at     timestamptz,
    added_at        timestamptz NOT NULL DEFAULT now(),
    removed_at      timestamptz
);
CREATE INDEX domains_due ON domains (next_attempt_at) WHERE state IN ('pending', 'active', 'failing');

CREATE TABLE certificates (
    id            bigserial PRIMARY KEY,
    domain_id     bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    chain_pem     text NOT NULL,
    -- AES-256-GCM envelope (common/keyring.c), bound to (domain name, certificate id);
    -- NULL once the key has been destroyed (domain removed).
    sealed_key    bytea,
    master_key_id integer NOT NULL,
    key_type      text NOT NULL DEFAULT 'ecdsa-p256',
    serial        text NOT NULL,
    not_before    timestamptz NOT NULL,
    not_after     timestamptz NOT NULL,
    ari_cert_id   text,
    replaces_id   bigint REFERENCES certificates(id) ON DELETE SET NULL,
    source        text NOT NULL DEFAULT 'acme' CHECK (source IN ('acme', 'import')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    revoke_reason integer
);
CREATE INDEX certificates_domain ON certificates (domain_id, id DESC);
CREATE INDEX certificates_master_key ON certificates (master_key_id) WHERE sealed_key IS NOT NULL;

ALTER TABLE domains ADD CONSTRAINT domains_current_cert_fk
    FOREIGN KEY (current_cert_id) REFERENCES certificates(id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE acme_accounts (
    id            bigserial PRIMARY KEY,
    directory_url text NOT NULL UNIQUE,
    account_url   text,
    sealed_key    bytea NOT NULL,
    master_key_id integer NOT NULL,
    contact       text,
    eab_kid       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rolled_at     timestamptz
);

-- HTTP-01 challenges: every terminator answers GET /.well-known/acme-challenge/TOKEN from here.
CREATE TABLE challenges (
    token             text PRIMARY KEY,
    key_authorization text NOT NULL,
    domain_id         bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    expires_at        timestamptz NOT NULL
);
CREATE INDEX challenges_domain ON challenges (domain_id);

CREATE TABLE issuance_attempts (
    id             bigserial PRIMARY KEY,
    domain_id      bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('new', 'renewal', 'ari_renewal')),
    state          text NOT NULL DEFAULT 'started' CHECK (state IN ('started', 'valid', 'failed', 'abandoned')),
    -- orders that count against the CA's new-orders-per-account limit (ARI renewals do not)
    counts_against_limit boolean NOT NULL DEFAULT true,
    order_url      text,
    problem_type   text,
    problem_detail text,
    problem        jsonb,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
CREATE INDEX issuance_attempts_recent ON issuance_attempts (started_at) WHERE counts_against_limit;
CREATE INDEX issuance_attempts_domain ON issuance_attempts (domain_id, id DESC);

-- TLS session ticket keys shared by the fleet, sealed under the master key.
CREATE TABLE ticket_keys (
    id            bigserial PRIMARY KEY,
    sealed_key    bytea NOT NULL,
    master_key_id integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    encrypt_until timestamptz NOT NULL,
    decrypt_until timestamptz NOT NULL
);

-- Terminators LISTEN on these channels; the payload is the domain name.
CREATE FUNCTION tracktls_notify_cert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE n text;
BEGIN
    IF TG_TABLE_NAME = 'domains' THEN
        n := COALESCE(NEW.name, OLD.name);
    ELSE
        SELECT name INTO n FROM domains WHERE id = COALESCE(NEW.domain_id, OLD.domain_id);
    END IF;
    IF n IS NOT NULL THEN PERFORM pg_notify('tracktls_cert', n); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER domains_notify AFTER UPDATE OF current_cert_id, state OR DELETE ON domains
    FOR EACH ROW EXECUTE FUNCTION tracktls_notify_cert();

CREATE FUNCTION tracktls_notify_challenge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tracktls_challenge', COALESCE(NEW.token, OLD.token));
    RETURN NULL;
END $$;
CREATE TRIGGER challenges_notify AFTER INSERT OR UPDATE OR DELETE ON challenges
    FOR EACH ROW EXECUTE FUNCTION tracktls_notify_challenge();

CREATE FUNCTION tracktls_notify_ticket() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tracktls_ticket_keys', '');
    RETURN NULL;
END $$;
CREATE TRIGGER ticket_keys_notify AFTER INSERT OR UPDATE OR DELETE ON ticket_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tracktls_notify_ticket();
