-- DNS and CAA preflight (issue 13): the dormant state, how long a domain's preflight has been
-- failing, and which CA issued each certificate.
-- dormant: the preflight kept failing for --dormant-after; no orders and no CA traffic, one check a
-- day, back to normal issuance as soon as its DNS points at the edge again.
ALTER TABLE domains DROP CONSTRAINT domains_state_check;
ALTER TABLE domains ADD CONSTRAINT domains_state_check
    CHECK (state IN ('pending', 'active', 'failing', 'paused', 'removed', 'dormant'));
-- Set by the first preflight failure of a streak, cleared when a preflight passes.
ALTER TABLE domains ADD COLUMN preflight_failing_since timestamptz;
DROP INDEX domains_due;
CREATE INDEX domains_due ON domains (next_attempt_at) WHERE state IN ('pending', 'active', 'failing', 'dormant');

-- The ACME directory that issued the certificate (NULL: imported, or issued before this column
-- when the issuer used more than one directory): ARI and `replaces` go to that CA only.
ALTER TABLE certificates ADD COLUMN directory_url text;
UPDATE certificates SET directory_url = (SELECT min(directory_url) FROM acme_accounts)
    WHERE source = 'acme' AND (SELECT count(*) FROM acme_accounts) = 1;
