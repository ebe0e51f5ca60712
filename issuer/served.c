/* served: is a stored certificate what the edge actually serves? A TLS handshake with the
 * domain's SNI through the edge, the chain verified against the configured trust, and the leaf's
 * serial compared with the stored one. Only then does a domain become https_ready (or renewed). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

/* Connect plus handshake; the edge answers from memory or one database read. */
#define SERVED_TIMEOUT_MS 5000L
#define HTTPS_PORT 443

int served_config_parse(const struct issuer_ctx *ctx, struct served_config *out, struct tt_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *via = issuer_opt(ctx, "https-check-via");
	if (via && tt_parse_hostport(via, out->via_host, sizeof(out->via_host), &out->via_port, err) < 0)
		return tt_wrap(err, "--https-check-via");
	if (via && !out->via_host[0])
		snprintf(out->via_host, sizeof(out->via_host), "127.0.0.1");
	out->ca_file = issuer_opt(ctx, "https-check-ca-file");
	return 0;
}

/* The leaf's PEM from curl's certificate info (the first certificate of the peer's chain). */
static const char *leaf_pem(CURL *h)
{
	struct curl_certinfo *ci = NULL;
	if (curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) != CURLE_OK || !ci || ci->num_of_certs < 1)
		return NULL;
	for (struct curl_slist *s = ci->certinfo[0]; s; s = s->next)
		if (strncmp(s->data, "Cert:", 5) == 0)
			return s->data + 5;
	return NULL;
}

int served_check(CURL *h, const struct served_config *cfg, const char *name, const char *serial, struct tt_err *err)
{
	char url[TT_NAME_MAX + 32], connect_to[TT_NAME_MAX + 300];
	snprintf(url, sizeof(url), "https://%s:%d/", name, HTTPS_PORT);
	struct curl_slist *ct = NULL;
	if (cfg->via_host[0]) {
		bool v6 = strchr(cfg->via_host, ':') != NULL;
		snprintf(connect_to, sizeof(connect_to), "%s:%d:%s%s%s:%u", name, HTTPS_PORT, v6 ? "[" : "",
			 cfg->via_host, v6 ? "]" : "", cfg->via_port);
		ct = curl_slist_append(NULL, connect_to);
	}
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, SERVED_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_CONNECT_TO, ct);
	/* The handshake is the test: no request reaches the backend behind the edge. */
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
	/* A reused connection or a resumed session shows no fresh certificate. */
	curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	if (cfg->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
	CURLcode cc = curl_easy_perform(h);
	curl_slist_free_all(ct);
	if (cc != CURLE_OK)
		return tt_fail(err, "TLS to %s%s%s: %s", name, cfg->via_host[0] ? " via " : "", cfg->via_host,
			       curl_easy_strerror(cc));
	const char *pem = leaf_pem(h);
	if (!pem)
		return tt_fail(err, "TLS to %s: no certificate information", name);
	struct certinfo ci;
	if (certinfo_parse(pem, strlen(pem), &ci, err) < 0)
		return tt_wrap(err, "served certificate of %s", name);
	int rc = strcmp(ci.serial, serial) == 0
		     ? 0
		     : tt_fail(err, "%s serves serial %s, stored %s", name, ci.serial, serial);
	certinfo_free(&ci);
	return rc;
}

int served_check_and_record(PGconn *db, CURL *h, const struct served_config *cfg, int64_t domain_id, const char *name,
			    int64_t cert_id, const char *serial, struct tt_err *err)
{
	if (served_check(h, cfg, name, serial, err) < 0) {
		char did[TT_DB_ID_TEXT];
		tt_db_id_text(did, domain_id);
		const char *p[] = {did};
		struct tt_err e2;
		/* Remembered so a sweep tries the others first; a row held by an order is left alone. */
		tt_db_run(db, &e2,
			  "UPDATE domains SET served_checked_at = now() WHERE id ="
			  " (SELECT id FROM domains WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED)",
			  1, p);
		return 0;
	}
	if (store_served(db, domain_id, cert_id, err) < 0)
		return -1;
	tt_log(TT_INFO, "https_served", "name=%s cert_id=%" PRId64 " serial=%s", name, cert_id, serial);
	return 1;
}

int served_sweep(PGconn *db, CURL *h, const struct served_config *cfg, long limit, struct tt_err *err)
{
	char lim[24];
	snprintf(lim, sizeof(lim), "%ld", limit);
	const char *p[] = {lim};
	PGresult *res;
	if (tt_db_exec(
		db, &res, err,
		"SELECT d.id, d.name, c.id, c.serial FROM domains d JOIN certificates c ON c.id = d.current_cert_id"
		" WHERE d.state <> 'removed' AND d.served_cert_id IS DISTINCT FROM d.current_cert_id"
		" AND c.not_after > now() AND c.sealed_key IS NOT NULL"
		" ORDER BY d.served_checked_at NULLS FIRST, d.id LIMIT $1::int",
		1, p) < 0)
		return -1;
	int left = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		struct tt_err e = {{0}};
		int rc =
		    served_check_and_record(db, h, cfg, strtoll(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1),
					    strtoll(PQgetvalue(res, i, 2), NULL, 10), PQgetvalue(res, i, 3), &e);
		if (rc < 0) {
			PQclear(res);
			return tt_fail(err, "%s", e.msg);
		}
		if (rc == 0) {
			left++;
			char q[TT_LOG_QUOTED_MAX];
			tt_log(TT_DEBUG, "https_not_served", "name=%s error=%s", PQgetvalue(res, i, 1),
			       tt_log_quote(q, sizeof(q), e.msg));
		}
	}
	PQclear(res);
	return left;
}
