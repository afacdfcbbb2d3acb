// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket load balancing on the cgroup v2 sock_addr hooks: a connect() or
 * sendmsg() to a VIP is rewritten to a backend once, and recvmsg() and
 * getpeername() show the VIP again, so the application never sees the swap.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/maps.h"
#include "lib/select.h"
#include "lib/bucket.h"

/*
 * Set at load (sluicectl load --no-conn-tracking): without it TCP sockets are
 * not followed, so breakers never open and max_connections is not enforced.
 */
const volatile __u8 conn_tracking = 1;

/* The sock_addr return convention: 1 lets the call proceed, 0 refuses it. */
#define SK_PASS 1
#define SK_REFUSE 0

/* One view of the address a sock_addr hook works on, for either family. */
struct sock_target {
	struct sl_addr addr;
	__be16 port;
	__u8 family;
	/* IPv6 socket talking to ::ffff:a.b.c.d: handled as IPv4, written back mapped */
	__u8 v4_mapped;
};

static __always_inline int addr_equal(const struct sl_addr *a, const struct sl_addr *b)
{
	return a->words[0] == b->words[0] && a->words[1] == b->words[1] &&
	       a->words[2] == b->words[2] && a->words[3] == b->words[3];
}

static __always_inline int is_v4_mapped(const __u32 *w)
{
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void read_target4(struct bpf_sock_addr *ctx, struct sock_target *t)
{
	t->addr.words[0] = ctx->user_ip4;
	t->port = (__be16)ctx->user_port;
	t->family = SL_FAMILY_IPV4;
}

static __always_inline void read_target6(struct bpf_sock_addr *ctx, struct sock_target *t)
{
	__u32 w[4];

	/* The context allows 4-byte reads of user_ip6 one word at a time. */
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	t->port = (__be16)ctx->user_port;
	if (is_v4_mapped(w)) {
		t->addr.words[0] = w[3];
		t->family = SL_FAMILY_IPV4;
		t->v4_mapped = 1;
		return;
	}
	t->addr.words[0] = w[0];
	t->addr.words[1] = w[1];
	t->addr.words[2] = w[2];
	t->addr.words[3] = w[3];
	t->family = SL_FAMILY_IPV6;
}

/*
 * v6 is a constant at every call site, so clang drops the other family's
 * branch: the verifier refuses user_ip6 in IPv4 hooks and user_ip4 in IPv6 ones.
 */
static __always_inline void write_target(struct bpf_sock_addr *ctx, const struct sock_target *t,
					 const struct sl_addr *addr, __be16 port, const int v6)
{
	if (!v6) {
		ctx->user_ip4 = addr->words[0];
	} else if (t->v4_mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = addr->words[0];
	} else {
		ctx->user_ip6[0] = addr->words[0];
		ctx->user_ip6[1] = addr->words[1];
		ctx->user_ip6[2] = addr->words[2];
		ctx->user_ip6[3] = addr->words[3];
	}
	ctx->user_port = port;
}

/*
 * The maglev key. At connect() an unbound socket has no source port yet, so
 * the key is the source address and port the application bound, when it
 * bound any, else the client's network namespace: one pod, one key.
 */
static __always_inline __u64 client_identity(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u64 h = 0;

	if (sk) {
		if (sk->family == 2 /* AF_INET */)
			h = sk->src_ip4;
		else
			h = (__u64)sk->src_ip6[0] ^ sk->src_ip6[1] ^ sk->src_ip6[2] ^
			    ((__u64)sk->src_ip6[3] << 32);
		if (h || sk->src_port)
			return sl_mix64(h ^ ((__u64)sk->src_port << 48) ^ 0x5f3759df);
	}
	return sl_mix64(bpf_get_netns_cookie(ctx));
}

static __always_inline void remember_vip(struct bpf_sock_addr *ctx, const struct sock_target *vip,
					 const struct sl_backend *be)
{
	struct sl_revnat_key key = {};
	struct sl_revnat val = {};

	key.cookie = bpf_get_socket_cookie(ctx);
	key.backend = be->addr;
	key.port = be->port;
	key.family = be->family;
	val.vip = vip->addr;
	val.port = vip->port;
	val.family = vip->family;
	bpf_map_update_elem(&sl_revnat, &key, &val, BPF_ANY);
}

/*
 * A TCP connect to a backend holds one of its live slots from now until the
 * socket closes, and its outcome is owed to the breaker: sockops and
 * sock_release settle both, once, through the socket's sl_sock storage.
 */
static __always_inline int follow_connection(struct bpf_sock_addr *ctx,
					     const struct sl_svc_key *key,
					     const struct choice *c, const struct sl_backend *be)
{
	struct bpf_sock *sk = ctx->sk;
	struct sl_sock_state *st;

	if (!sk)
		return 0;
	st = bpf_sk_storage_get(&sl_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	/* connect() again on the same socket: the earlier attempt failed. */
	if (st->flags) {
		sock_settle(st, 0);
		sock_release_live(st);
	}
	st->svc = *key;
	st->backend = be->addr;
	st->backend_port = be->port;
	st->backend_id = c->id;
	st->flags = SL_SOCK_LIVE | SL_SOCK_PENDING | (c->probe ? SL_SOCK_PROBE : 0);
	live_add(c->id, 1);
	return 1;
}

/*
 * An unconnected UDP socket that already sends to this VIP keeps its backend
 * (one flow per socket): returns that backend, still in the service and not
 * marked down, or NULL for a new flow.
 */
static __always_inline struct sl_backend *udp_flow(struct bpf_sock_addr *ctx,
						   const struct sl_svc_key *key,
						   const struct sl_service *svc, __u32 *id)
{
	struct sl_sock_state *st;
	struct sl_backend *be;

	st = ctx->sk ? bpf_sk_storage_get(&sl_sock, ctx->sk, 0, 0) : NULL;
	if (!st || st->svc.port != key->port || st->svc.family != key->family ||
	    !addr_equal(&st->svc.vip, &key->vip))
		return NULL;
	*id = st->backend_id;
	be = bpf_map_lookup_elem(&sl_backends, id);
	if (!be || be->svc_id != svc->id || be->health == SL_HEALTH_DOWN)
		return NULL;
	return be;
}

static __always_inline void remember_udp_flow(struct bpf_sock_addr *ctx,
					      const struct sl_svc_key *key, __u32 id,
					      const struct sl_backend *be)
{
	struct sl_sock_state *st;

	st = ctx->sk ? bpf_sk_storage_get(&sl_sock, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE) :
		       NULL;
	if (!st)
		return;
	st->svc = *key;
	st->backend = be->addr;
	st->backend_port = be->port;
	st->backend_id = id;
}

static __always_inline int refuse(__u32 svc_id, __u32 reason)
{
	count_refused(svc_id, reason);
	bpf_set_retval(-ECONNREFUSED);
	return SK_REFUSE;
}

static __always_inline int balance(struct bpf_sock_addr *ctx, struct sock_target *t, const int v6,
				   const int is_connect)
{
	struct sl_svc_key key = {};
	struct sl_service *svc;
	struct sl_backend *be;
	__u32 reason, flow_id;
	struct choice c;
	__u64 client = 0;

	key.vip = t->addr;
	key.port = t->port;
	key.proto = ctx->protocol;
	key.family = t->family;
	svc = bpf_map_lookup_elem(&sl_services, &key);
	if (!svc)
		return SK_PASS;

	if (!is_connect) {
		be = udp_flow(ctx, &key, svc, &flow_id);
		if (be) {
			write_target(ctx, t, &be->addr, be->port, v6);
			remember_vip(ctx, t, be);
			return SK_PASS;
		}
	}
	if (svc->algorithm == SL_ALG_MAGLEV || svc->affinity_timeout_s ||
	    svc->per_client_connections_per_second)
		client = client_identity(ctx);
	if (svc->connections_per_second || svc->per_client_connections_per_second) {
		reason = rate_limit(svc, client);
		if (reason)
			return refuse(svc->id, reason);
	}
	select_backend(svc, client, &c);
	be = c.id ? bpf_map_lookup_elem(&sl_backends, &c.id) : NULL;
	/* A backend of the other family cannot be reached from this socket. */
	if (!be || be->family != t->family)
		return refuse(svc->id, c.id ? SL_REASON_NO_BACKEND : c.reason);

	write_target(ctx, t, &be->addr, be->port, v6);
	count_selected(svc->id, &c);
	if (!is_connect)
		remember_udp_flow(ctx, &key, c.id, be);
	/* A followed TCP socket finds its VIP in its own storage (see sl_sock_state). */
	if (!(conn_tracking && is_connect && key.proto == IPPROTO_TCP &&
	      follow_connection(ctx, &key, &c, be)))
		remember_vip(ctx, t, be);
	return SK_PASS;
}

/* recvmsg/getpeername: put the VIP back where the application expects it. */
static __always_inline int restore_vip(struct bpf_sock_addr *ctx, struct sock_target *t, const int v6)
{
	struct sl_revnat_key key = {};
	struct sl_sock_state *st;
	struct sl_revnat *vip;

	st = ctx->sk ? bpf_sk_storage_get(&sl_sock, ctx->sk, 0, 0) : NULL;
	if (st && st->backend_port == t->port && st->svc.family == t->family &&
	    addr_equal(&st->backend, &t->addr)) {
		write_target(ctx, t, &st->svc.vip, st->svc.port, v6);
		return SK_PASS;
	}

	key.cookie = bpf_get_socket_cookie(ctx);
	key.backend = t->addr;
	key.port = t->port;
	key.family = t->family;
	vip = bpf_map_lookup_elem(&sl_revnat, &key);
	if (vip)
		write_target(ctx, t, &vip->vip, vip->port, v6);
	return SK_PASS;
}

SEC("cgroup/connect4")
int sl_connect4(struct bpf_sock_addr *ctx)
{
	struct sock_target t = {};

	read_target4(ctx, &t);
	return balance(ctx, &t, 0, 1);
}

SEC("cgroup/connect6")
int sl_connect6(struct bpf_sock_addr *ctx)
{
	struct sock_target t = {};

	read_target6(ctx, &t);
	return balance(ctx, &t, 1, 1);
}

SEC("cgroup/sendmsg4")
int sl_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct sock_target t = {};

	read_target4(ctx, &t);
	return balance(ctx, &t, 0, 0);
}

SEC("cgroup/sendmsg6")
int sl_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct sock_target t = {};

	read_target6(ctx, &t);
	return balance(ctx, &t, 1, 0);
}

SEC("cgroup/recvmsg4")
int sl_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct sock_target t = {};

	read_target4(ctx, &t);
	return restore_vip(ctx, &t, 0);
}

SEC("cgroup/recvmsg6")
int sl_recvmsg6(struct bpf_sock_addr *ctx)
{
	struct sock_target t = {};

	read_target6(ctx, &t);
	return restore_vip(ctx, &t, 1);
}

SEC("cgroup/getpeername4")
int sl_getpeername4(struct bpf_sock_addr *ctx)
{
	struct sock_target t = {};

	read_target4(ctx, &t);
	return restore_vip(ctx, &t, 0);
}

SEC("cgroup/getpeername6")
int sl_getpeername6(struct bpf_sock_addr *ctx)
{
	struct sock_target t = {};

	read_target6(ctx, &t);
	return restore_vip(ctx, &t, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
