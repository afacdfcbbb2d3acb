// SPDX-License-Identifier: MIT
/*
 * sluicectl register SERVICE ADDR:PORT [--ttl S] [--weight W] [--heartbeat]
 * and deregister SERVICE ADDR:PORT: one instance in a Redis registry. With
 * --heartbeat the command stays, renews the TTL every ttl/3 (registering
 * again if the key went: expired, deleted, or a Redis restarted empty), and
 * deregisters on SIGTERM or SIGINT: a sidecar for scripts and processes that
 * cannot heartbeat themselves.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/backoff.h"
#include "lib/log.h"
#include "lib/redis_doc.h"
#include "redis.h"
#include "sluicectl.h"

#define HEARTBEAT_TTL_DEFAULT 10
#define TTL_MAX_S (30 * 86400)

struct instance {
	char svc[SL_NAME_MAX];
	char id[SL_ENDPOINT_STRLEN];
	char key[SL_REDIS_KEY_MAX];
	char set[SL_REDIS_KEY_MAX];
	char chan[SL_REDIS_KEY_MAX];
	char msg[SL_REDIS_MSG_MAX];
	struct sl_reg_backend be;
	unsigned int ttl;
};

static int parse_instance(const struct ctl *c, struct ctl_redis *r, struct instance *in)
{
	const char *svc = c->argv[0], *ep = c->argv[1];

	if (!sl_redis_name_valid(svc, strlen(svc))) {
		log_err("service \"%s\": expected 1 to %d characters of A-Z a-z 0-9 . _ -", svc,
			SL_NAME_MAX - 1);
		return -EINVAL;
	}
	if (sl_rinst_id(ep, in->id, sizeof(in->id)) ||
	    sl_endpoint_parse(in->id, &in->be.addr, &in->be.family, &in->be.port)) {
		log_err("instance \"%s\": expected ADDR:PORT or [ADDR6]:PORT", ep);
		return -EINVAL;
	}
	snprintf(in->svc, sizeof(in->svc), "%s", svc);
	sl_rkey_instance(r->prefix, in->svc, in->id, in->key, sizeof(in->key));
	sl_rkey_instances(r->prefix, in->svc, in->set, sizeof(in->set));
	sl_rkey_channel(r->prefix, in->chan, sizeof(in->chan));
	snprintf(in->msg, sizeof(in->msg), "%s %s", in->svc, in->id);
	return 0;
}

/* The instance must fit its service: known to the registry, with a VIP of its family. */
static int check_service(struct ctl_redis *r, const struct instance *in)
{
	char hkey[SL_REDIS_KEY_MAX], err[SL_ERR_MAX];
	struct sl_reg_service svc;
	redisReply *def;
	json_t *dj;
	int ret;

	sl_rkey_services(r->prefix, hkey, sizeof(hkey));
	def = ctl_redis_cmd(r, "HGET %s %s", hkey, in->svc);
	if (!def)
		return -EIO;
	if (def->type != REDIS_REPLY_STRING) {
		log_err("no service \"%s\" in the registry %s (put its definition first: sluicectl "
			"registry put)", in->svc, r->display);
		freeReplyObject(def);
		return -ENOENT;
	}
	ret = sl_rsvc_parse(hkey, in->svc, def->str, def->len, &svc, &dj, err, sizeof(err));
	freeReplyObject(def);
	if (ret) {
		log_err("the service's definition is invalid: %s", err);
		return ret;
	}
	json_decref(dj);
	if (svc.key.family != in->be.family) {
		log_err("%s: an IPv%u address for service \"%s\", whose VIP is IPv%u", in->id,
			in->be.family, in->svc, svc.key.family);
		return -EINVAL;
	}
	return 0;
}

/*
 * Ends a transaction that MULTI and a command on the instance's key began:
 * set_cmd (SADD or SREM) on its service's set, PUBLISH, EXEC, then reads
 * the replies. err: what beginning it returned. *exec: EXEC's reply, or NULL.
 */
static int end_instance_txn(struct ctl_redis *r, const struct instance *in, const char *set_cmd,
			    int err, redisReply **exec)
{
	*exec = NULL;
	if (!err)
		err = ctl_redis_append(r, "%s %s %s", set_cmd, in->set, in->id);
	if (!err)
		err = ctl_redis_append(r, "PUBLISH %s %s", in->chan, in->msg);
	if (!err)
		err = ctl_redis_append(r, "EXEC");
	if (!err)
		err = ctl_redis_drain(r, 4, "MULTI");
	if (err && r->c->err)
		return err;
	*exec = ctl_redis_next(r, "EXEC");
	return *exec ? err : -EIO;
}

/* SET (with EX when ttl), SADD, PUBLISH, in one transaction. */
static int write_instance(struct ctl_redis *r, const struct instance *in)
{
	char *value = sl_rinst_value(&in->be);
	redisReply *exec;
	int err;

	if (!value)
		return -ENOMEM;
	err = ctl_redis_append(r, "MULTI");
	if (!err && in->ttl)
		err = ctl_redis_append(r, "SET %s %s EX %u", in->key, value, in->ttl);
	else if (!err)
		err = ctl_redis_append(r, "SET %s %s", in->key, value);
	free(value);
	err = end_instance_txn(r, in, "SADD", err, &exec);
	if (exec)
		freeReplyObject(exec);
	return err;
}

/* DEL, SREM, PUBLISH; *existed says whether the key was there. */
static int remove_instance(struct ctl_redis *r, const struct instance *in, int *existed)
{
	redisReply *exec;
	int err = ctl_redis_append(r, "MULTI");

	if (!err)
		err = ctl_redis_append(r, "DEL %s", in->key);
	err = end_instance_txn(r, in, "SREM", err, &exec);
	if (!exec)
		return err;
	*existed = exec->type == REDIS_REPLY_ARRAY && exec->elements >= 2 &&
		   (exec->element[0]->integer || exec->element[1]->integer);
	freeReplyObject(exec);
	return err;
}

static void print_registered(const struct ctl *c, const struct ctl_redis *r,
			     const struct instance *in)
{
	if (c->json)
		ctl_print_json(c, json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:b}", "registry", r->display,
					    "service", in->svc, "instance", in->id, "key", in->key,
					    "weight", (int)in->be.weight, "ttl", (int)in->ttl,
					    "heartbeat", c->heartbeat));
	else if (in->ttl)
		printf("registered %s in %s (weight %u, ttl %u s%s)\n", in->id, in->svc,
		       in->be.weight, in->ttl, c->heartbeat ? ", heartbeating" : "");
	else
		printf("registered %s in %s (weight %u, no ttl)\n", in->id, in->svc, in->be.weight);
	fflush(stdout);
}

/* EXPIRE every ttl/3 until SIGTERM/SIGINT; then DEL. A lost key is registered again. */
static int heartbeat(const struct ctl *c, struct ctl_redis *r, const struct instance *in)
{
	long period_ms = in->ttl * 1000L / 3;
	unsigned int attempt = 0;
	struct timespec ts;
	redisReply *rep;
	sigset_t set;
	int sig, err, existed;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	srand((unsigned int)(time(NULL) ^ getpid()));
	for (;;) {
		long wait_ms = r->c ? period_ms : (long)sl_backoff_ms(attempt, 200, period_ms,
								     (uint32_t)rand());

		ts.tv_sec = wait_ms / 1000;
		ts.tv_nsec = (wait_ms % 1000) * 1000000L;
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (!r->c) {
			/* Reconnect: the registry may have come back (empty, perhaps). */
			if (ctl_redis_open(c, r)) {
				attempt++;
				continue;
			}
			attempt = 0;
			log_info("reconnected to %s", r->display);
		}
		rep = ctl_redis_cmd(r, "EXPIRE %s %u", in->key, in->ttl);
		if (!rep) {
			if (r->c && r->c->err)
				ctl_redis_close(r);
			continue;
		}
		if (rep->type == REDIS_REPLY_INTEGER && !rep->integer) {
			log_warn("%s of %s was gone (expired, deleted, or Redis restarted): "
				 "registering it again", in->id, in->svc);
			if (write_instance(r, in) && r->c && r->c->err)
				ctl_redis_close(r);
		}
		freeReplyObject(rep);
	}
	log_info("signal %d: deregistering %s of %s", sig, in->id, in->svc);
	if (!r->c && ctl_redis_open(c, r))
		return -ECONNREFUSED;
	err = remove_instance(r, in, &existed);
	if (!err && !c->json)
		printf("deregistered %s from %s\n", in->id, in->svc);
	return err;
}

static int take_instance_args(struct ctl *c, const char *cmd)
{
	if (c->argc != 2) {
		fprintf(stderr, "sluicectl: %s takes SERVICE ADDR:PORT (and --registry "
			"redis://HOST:PORT)\n", cmd);
		usage();
		return CTL_EUSAGE;
	}
	return 0;
}

int do_register(struct ctl *c)
{
	struct instance in = { 0 };
	struct ctl_redis r;
	sigset_t set;
	int err;

	err = take_instance_args(c, "register");
	if (err)
		return err;
	if (c->ttl > TTL_MAX_S || (c->heartbeat && c->ttl == 0)) {
		fprintf(stderr, "sluicectl: --ttl: expected 1..%d seconds%s\n", TTL_MAX_S,
			c->heartbeat ? " with --heartbeat" : " (0: no expiry)");
		return CTL_EUSAGE;
	}
	in.ttl = c->ttl >= 0 ? c->ttl : c->heartbeat ? HEARTBEAT_TTL_DEFAULT : 0;
	in.be.weight = c->weight ? c->weight : 1;
	/* Blocked from the start: a SIGTERM during registration still deregisters. */
	if (c->heartbeat) {
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		sigprocmask(SIG_BLOCK, &set, NULL);
	}
	err = ctl_redis_open(c, &r);
	if (err)
		return err;
	err = parse_instance(c, &r, &in);
	if (!err)
		err = check_service(&r, &in);
	if (!err)
		err = write_instance(&r, &in);
	if (!err) {
		print_registered(c, &r, &in);
		if (c->heartbeat)
			err = heartbeat(c, &r, &in);
	}
	ctl_redis_close(&r);
	return err;
}

int do_deregister(struct ctl *c)
{
	struct instance in = { 0 };
	struct ctl_redis r;
	int err, existed = 0;

	err = take_instance_args(c, "deregister");
	if (err)
		return err;
	err = ctl_redis_open(c, &r);
	if (err)
		return err;
	err = parse_instance(c, &r, &in);
	if (!err)
		err = remove_instance(&r, &in, &existed);
	if (!err && !existed) {
		log_err("no instance %s of service \"%s\" in the registry %s", in.id, in.svc,
			r.display);
		err = -ENOENT;
	}
	if (!err) {
		if (c->json)
			ctl_print_json(c, json_pack("{s:s,s:s,s:s,s:b}", "registry", r.display,
						    "service", in.svc, "instance", in.id,
						    "deregistered", 1));
		else
			printf("deregistered %s from %s\n", in.id, in.svc);
	}
	ctl_redis_close(&r);
	return err;
}
