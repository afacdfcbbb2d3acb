// SPDX-License-Identifier: MIT
/*
 * sluiced, the agent: keeps the pinned maps in sync with the registry,
 * checks backend health, and serves metrics and an API. The datapath never
 * depends on it: killed at any moment, it leaves consistent pinned maps and
 * links, and a restart adopts them instead of flushing.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent.h"
#include "lib/loader.h"
#include "lib/log.h"
#include "lib/reconcile.h"

static void set_degraded(struct agent *a, const char *why)
{
	a->status.degraded = 1;
	a->status.registry_errors_total++;
	a->status.last_error_unix_ns = wall_ns();
	snprintf(a->status.last_error, sizeof(a->status.last_error), "%s", why);
	log_err("registry rejected, generation %llu stays in force: %s",
		(unsigned long long)a->generation, why);
}

int agent_apply_registry(struct agent *a)
{
	struct sl_apply_result res = { 0 };
	struct sl_registry reg = { 0 };
	char err[SL_ERR_MAX];
	__u64 start = now_ns();
	double seconds;
	int ret, lock_fd;

	if (a->redis) {
		int skip = 0;

		ret = source_redis_read(a->redis, &reg, &skip, err, sizeof(err));
		if (!ret && skip) { /* what is applied already, and no repair asked for */
			sl_registry_free(&reg);
			return 0;
		}
	} else {
		ret = source_file_read(&a->source, &reg, err, sizeof(err));
	}
	if (ret) {
		set_degraded(a, err);
		return ret;
	}
	/*
	 * The pin root's lock, as sluicectl apply and load take it: a load's
	 * rewrite of sl_vip_filter from sl_services must not interleave with an
	 * apply's own (it could drop a VIP the apply had just added).
	 */
	lock_fd = sl_lock_pin_root(a->cfg.pin_root);
	if (lock_fd < 0) {
		snprintf(err, sizeof(err), "cannot lock the pin root %.200s: %s", a->cfg.pin_root,
			 strerror(-lock_fd));
		set_degraded(a, err);
		ret = lock_fd;
		goto out;
	}
	ret = sl_reconcile(&a->maps, &reg, 0, &res, err, sizeof(err));
	close(lock_fd);
	seconds = (now_ns() - start) / 1e9;
	status_observe_reconcile(&a->status, seconds);
	if (ret) {
		set_degraded(a, err);
		goto out;
	}
	a->status.degraded = 0;
	a->status.last_error[0] = '\0';
	a->status.last_sync_unix_ns = wall_ns();
	a->generation = res.generation;
	if (a->redis)
		source_redis_applied(a->redis, &reg); /* keys it skipped keep it degraded */
	for (size_t i = 0; i < res.change_count; i++) {
		const struct sl_change *c = &res.changes[i];

		log_debug("change op=%s object=%s service=%s backend=%s detail=\"%s\"",
			  sl_change_op_name(c->op), sl_change_object_name(c->object),
			  c->service, c->backend[0] ? c->backend : "-", c->detail);
	}
	log_info("registry applied generation=%llu services=%zu changes=%zu duration_ms=%.2f",
		 (unsigned long long)res.generation, reg.count, res.change_count, seconds * 1e3);
	ret = health_sync(a->health, &reg);
out:
	sl_apply_result_free(&res);
	sl_registry_free(&reg);
	return ret;
}

static void on_registry_changed(void *ctx)
{
	agent_apply_registry(ctx);
}

static void on_signal(struct loop_watch *w, uint32_t events)
{
	struct agent *a = (struct agent *)((char *)w - offsetof(struct agent, signal_watch));
	struct signalfd_siginfo si;

	(void)events;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			log_info("SIGHUP: re-reading configuration and registry");
			if (config_reload(&a->cfg, a->argc, a->argv))
				log_err("configuration not reloaded; the previous one stays");
			log_set_level(a->cfg.log_level);
			if (a->redis)
				source_redis_resync(a->redis);
			else
				agent_apply_registry(a);
		} else {
			log_info("signal %u: stopping", si.ssi_signo);
			a->loop.stop = 1;
		}
	}
}

static int watch_signals(struct agent *a)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	a->signal_watch = (struct loop_watch){ fd, on_signal };
	return loop_add(&a->loop, &a->signal_watch, EPOLLIN);
}

/* Adopts a loaded datapath as it is; loads one (as sluicectl load would) only if none is. */
static int ensure_datapath(struct agent *a)
{
	struct sl_load_opts o = { .pin_root = a->cfg.pin_root,
				  .cgroup = a->cfg.cgroup[0] ? a->cfg.cgroup : NULL,
				  .no_conn_tracking = a->cfg.no_conn_tracking,
				  .rl_clients = a->cfg.rl_clients,
				  .xdp_flows = a->cfg.xdp_flows };
	struct sl_generation g = { 0 };
	struct sl_status st;
	int err;

	err = sl_status_read(a->cfg.pin_root, &st);
	if (err)
		return err;
	if (!st.loaded) {
		log_info("no datapath under %s: loading it", a->cfg.pin_root);
		err = sl_load(&o);
		if (err)
			return err;
	}
	err = sl_maps_open(a->cfg.pin_root, &a->maps);
	if (err)
		return err;
	if (!sl_generation_read(&a->maps, &g)) {
		a->generation = g.generation;
		a->adopted_services = g.service_count;
	}
	log_info("datapath %s under %s, generation %llu in force",
		 st.loaded ? "adopted" : "loaded", a->cfg.pin_root,
		 (unsigned long long)a->generation);
	return 0;
}

/* The Redis source applies once it is in step (an unreachable Redis leaves the maps alone). */
static int open_redis(struct agent *a)
{
	struct source_redis_opts o = { .url = a->cfg.registry,
				       .password = a->cfg.redis_password,
				       .prefix = a->cfg.redis_prefix,
				       .resync_ms = a->cfg.redis_resync_ms,
				       .empty_grace_ms = a->cfg.redis_empty_grace_ms,
				       .maps_services = a->adopted_services };
	char err[512];

	a->redis = source_redis_open(&o, &a->loop, &a->status, on_registry_changed, a, err,
				     sizeof(err));
	if (!a->redis) {
		log_err("registry: %s", err);
		return -EINVAL;
	}
	a->status.registry_source = source_redis_display(a->redis);
	return 0;
}

int main(int argc, char **argv)
{
	struct agent a = { .argc = argc, .argv = argv };
	int err;

	for (size_t i = 0; i < sizeof(a.maps) / sizeof(int); i++)
		((int *)&a.maps)[i] = -1;
	a.source.inotify_fd = a.source.debounce_fd = -1;
	log_init("sluiced", SL_LOG_INFO);
	log_set_style(SL_LOG_KV);
	err = config_load(&a.cfg, argc, argv);
	if (err)
		return err > 0 ? 0 : 2;
	log_set_level(a.cfg.log_level);
	log_set_style(a.cfg.log_style);
	log_hook_libbpf();
	a.status.registry_source = a.cfg.registry;
	a.status.start_unix_ns = wall_ns();

	if ((err = loop_init(&a.loop)) || (err = watch_signals(&a))) {
		log_err("cannot set up the event loop: %s", strerror(-err));
		return 1;
	}
	err = ensure_datapath(&a);
	if (err)
		goto out;
	a.health = health_new(&a.loop, &a.maps);
	if (!a.health) {
		err = -ENOMEM;
		goto out;
	}
	if (!strncmp(a.cfg.registry, "file:", 5)) {
		err = source_file_open(&a.source, a.cfg.registry + strlen("file:"), &a.loop,
				       on_registry_changed, &a);
		if (err)
			goto out;
		agent_apply_registry(&a); /* a bad document leaves what is pinned in force */
	} else {
		err = open_redis(&a);
		if (err)
			goto out;
	}
	if (a.cfg.xdp_interfaces[0]) {
		err = ifwatch_start(&a.ifwatch, &a.loop, a.cfg.xdp_interfaces, a.cfg.pin_root,
				    &a.cfg.xdp_no_forward);
		if (err)
			goto out;
	}
	err = api_start(&a);
	if (err)
		goto out;
	log_info("serving on %s, registry %s", a.cfg.listen, a.status.registry_source);
	while (!a.loop.stop) {
		err = loop_run_once(&a.loop, api_timeout_ms(&a, 100));
		if (err < 0)
			break;
		api_poll(&a);
	}
	err = 0;
out:
	ifwatch_stop(&a.ifwatch);
	source_redis_cancel_writes(a.redis);
	api_stop(&a);
	health_free(a.health);
	source_file_close(&a.source);
	source_redis_close(a.redis);
	sl_maps_close(&a.maps);
	if (!err && a.cfg.cleanup_on_exit) {
		log_info("--cleanup-on-exit: removing the datapath under %s", a.cfg.pin_root);
		err = sl_unload(a.cfg.pin_root);
	} else if (!err) {
		log_info("stopped; the datapath under %s keeps running", a.cfg.pin_root);
	}
	loop_close(&a.loop);
	return err ? 1 : 0;
}
