-- A domain inserted with its certificate already set (bulk loads, restores) must reach the
-- terminators' caches and name filters like an update does.
DROP TRIGGER domains_notify ON domains;
CREATE TRIGGER domains_notify AFTER INSERT OR UPDATE OF current_cert_id, state OR DELETE ON domains
    FOR EACH ROW EXECUTE FUNCTION tracktls_notify_cert();
