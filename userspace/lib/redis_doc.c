// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "redis_doc.h"

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n >= errlen && errlen >= 4)
		memcpy(err + errlen - 4, "...", 4);
	return -EINVAL;
}

int sl_rsvc_parse(const char *hkey, const char *name, const char *raw, size_t len,
		  struct sl_reg_service *svc, json_t **def, char *err, size_t errlen)
{
	char msg[SL_ERR_MAX], prefix[SL_NAME_MAX + 16];
	struct sl_registry reg = { 0 };
	json_t *root, *v, *doc;
	json_error_t jerr;
	char *text;
	int ret;

	*def = NULL;
	memset(svc, 0, sizeof(*svc));
	root = json_loadb(raw, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fail(err, errlen, "%s field \"%s\": invalid JSON at line %d, column %d: %s",
			    hkey, name, jerr.line, jerr.column, jerr.text);
	if (!json_is_object(root)) {
		ret = fail(err, errlen, "%s field \"%s\": must be a JSON object", hkey, name);
		goto out;
	}
	if (json_object_get(root, "backends")) {
		ret = fail(err, errlen, "%s field \"%s\": backends: not kept in the definition "
			   "(instances are keys of their own: sluicectl register, registry put)",
			   hkey, name);
		goto out;
	}
	v = json_object_get(root, "name");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), name))) {
		ret = fail(err, errlen, "%s field \"%s\": name: must be the field's name (\"%s\")",
			   hkey, name, name);
		goto out;
	}
	json_object_set_new(root, "name", json_string(name));
	doc = json_pack("{s:[O]}", "services", root);
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!text) {
		ret = fail(err, errlen, "%s field \"%s\": out of memory", hkey, name);
		goto out;
	}
	ret = sl_registry_parse(text, strlen(text), &reg, msg, sizeof(msg));
	free(text);
	if (ret) {
		/* The parser names the service; the key says it already. */
		size_t plen = snprintf(prefix, sizeof(prefix), "service \"%s\": ", name);
		const char *m = strncmp(msg, prefix, plen) ? msg : msg + plen;

		fail(err, errlen, "%s field \"%s\": %s", hkey, name, m);
		goto out;
	}
	*svc = reg.services[0];
	reg.services[0].backends = NULL;
	sl_registry_free(&reg);
	*def = root;
	root = NULL;
out:
	json_decref(root);
	return ret;
}

static int get_int(json_t *o, const char *field, long long min, long long max, long long def,
		   long long *out, const char *key, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, field);

	if (!v) {
		if (def < 0)
			return fail(err, errlen, "%s: %s: required field is missing", key, field);
		*out = def;
		return 0;
	}
	if (!json_is_integer(v))
		return fail(err, errlen, "%s: %s: must be an integer", key, field);
	*out = json_integer_value(v);
	if (*out < min || *out > max)
		return fail(err, errlen, "%s: %s: must be %lld..%lld (got %lld)", key, field, min,
			    max, *out);
	return 0;
}

int sl_rinst_parse(const char *key, const char *id, const char *raw, size_t len,
		   struct sl_reg_backend *be, char *err, size_t errlen)
{
	char ep[SL_ENDPOINT_STRLEN];
	long long port, weight;
	const char *field;
	json_error_t jerr;
	json_t *root, *v;
	int ret = -EINVAL;

	memset(be, 0, sizeof(*be));
	root = json_loadb(raw, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return fail(err, errlen, "%s: invalid JSON at line %d, column %d: %s", key,
			    jerr.line, jerr.column, jerr.text);
	if (!json_is_object(root)) {
		fail(err, errlen, "%s: must be a JSON object", key);
		goto out;
	}
	json_object_foreach(root, field, v) {
		if (strcmp(field, "address") && strcmp(field, "port") && strcmp(field, "weight")) {
			fail(err, errlen, "%s: %s: unknown field (address, port, weight)", key, field);
			goto out;
		}
	}
	v = json_object_get(root, "address");
	if (!v || !json_is_string(v)) {
		fail(err, errlen, "%s: address: %s", key, v ? "must be a string" :
			"required field is missing");
		goto out;
	}
	if (sl_addr_parse(json_string_value(v), &be->addr, &be->family)) {
		fail(err, errlen, "%s: address: invalid address \"%.64s\" (expected a literal IPv4 "
		     "or IPv6 address)", key, json_string_value(v));
		goto out;
	}
	if (get_int(root, "port", 1, 65535, -1, &port, key, err, errlen) ||
	    get_int(root, "weight", 1, SL_WEIGHT_MAX, 1, &weight, key, err, errlen))
		goto out;
	be->port = port;
	be->weight = weight;
	sl_endpoint_format(&be->addr, be->family, be->port, ep, sizeof(ep));
	if (strcmp(ep, id)) {
		fail(err, errlen, "%s: the value is for %s, the key for %s", key, ep, id);
		goto out;
	}
	ret = 0;
out:
	json_decref(root);
	return ret;
}

static json_t *backend_json(const struct sl_reg_backend *be)
{
	char a[SL_ADDR_STRLEN];

	return json_pack("{s:s,s:i,s:i}", "address", sl_addr_format(&be->addr, be->family, a,
								    sizeof(a)),
			 "port", (int)be->port, "weight", (int)be->weight);
}

char *sl_rinst_value(const struct sl_reg_backend *be)
{
	json_t *o = backend_json(be);
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	json_decref(o);
	return s;
}

int sl_rbackend_cmp(const void *a, const void *b)
{
	const struct sl_reg_backend *x = a, *y = b;
	int c;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	c = memcmp(&x->addr, &y->addr, sizeof(x->addr));
	if (c)
		return c;
	return x->port < y->port ? -1 : x->port > y->port;
}

char *sl_rdoc_service_text(json_t *def, const struct sl_reg_backend *bes, size_t n)
{
	json_t *arr = json_array();
	char *text = NULL;

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(arr, backend_json(&bes[i])))
			goto out;
	if (json_object_set(def, "backends", arr))
		goto out;
	text = json_dumps(def, JSON_COMPACT | JSON_SORT_KEYS);
	json_object_del(def, "backends");
out:
	json_decref(arr);
	return text;
}
