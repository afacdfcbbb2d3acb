// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Connection lifecycle for circuit breaking: sockops follows every TCP
 * socket the socket programs balanced (it has sl_sock storage) from SYN to
 * close; sock_release catches sockets the application closes or abandons
 * before the kernel reports an outcome. Between them each socket's connect
 * outcome and live count are settled exactly once (bpf/lib/breaker.h).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "lib/maps.h"
#include "lib/breaker.h"

SEC("sockops")
int sl_sockops(struct bpf_sock_ops *skops)
{
	struct sl_sock_state *st;
	struct bpf_sock *sk;
	__u32 op = skops->op;

	/* Only connect, established and the move to CLOSE matter; skip the rest before any lookup. */
	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    !(op == BPF_SOCK_OPS_STATE_CB && skops->args[1] == BPF_TCP_CLOSE))
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	st = bpf_sk_storage_get(&sl_sock, sk, 0, 0);
	if (!st)
		return 1; /* not a balanced socket */

	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* State changes reach sockops only for sockets that ask for them. */
		bpf_sock_ops_cb_flags_set(skops,
					  skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		sock_settle(st, 1);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* To CLOSE (args[1]): from SYN_SENT a failed connect (refused, reset,
		 * timed out, unreachable), from any other state the end.
		 */
		sock_settle(st, 0);
		sock_release_live(st);
		break;
	}
	return 1;
}

/* close() or exit before an outcome: the application gave up on the connect. */
SEC("cgroup/sock_release")
int sl_sock_release(struct bpf_sock *sk)
{
	struct sl_sock_state *st = bpf_sk_storage_get(&sl_sock, sk, 0, 0);

	if (st && st->flags) {
		sock_settle(st, 0);
		sock_release_live(st);
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
