-- A certificate chain is public: a private key must never be stored beside it in the clear,
-- whatever program writes the row. (Written as a pattern so that a dump's scan for clear keys
-- does not trip over the rule itself.)
ALTER TABLE certificates ADD CONSTRAINT certificates_chain_holds_no_key
    CHECK (chain_pem !~ 'PRIVATE\s+KEY');
