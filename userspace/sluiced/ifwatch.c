// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>

#include "ifwatch.h"
#include "lib/loader.h"
#include "lib/log.h"

static const char *link_name(const struct nlmsghdr *nlh)
{
	const struct nlattr *attr;

	mnl_attr_for_each(attr, nlh, sizeof(struct ifinfomsg))
		if (mnl_attr_get_type(attr) == IFLA_IFNAME &&
		    !mnl_attr_validate(attr, MNL_TYPE_STRING))
			return mnl_attr_get_str(attr);
	return NULL;
}

static int on_link(const struct nlmsghdr *nlh, void *data)
{
	struct ifwatch *w = data;
	const char *name = link_name(nlh);
	enum sl_xdp_mode used;

	if (!name || fnmatch(w->pattern, name, 0))
		return MNL_CB_OK;
	if (nlh->nlmsg_type == RTM_DELLINK) {
		/* Its XDP link died with it; the pin is all that is left. */
		log_info("xdp: interface %s went away", name);
		sl_xdp_detach(w->pin_root, name);
	} else if (nlh->nlmsg_type == RTM_NEWLINK && !sl_xdp_attached(w->pin_root, name)) {
		if (!sl_xdp_attach(w->pin_root, name, SL_XDP_AUTO, !*w->no_forward, &used))
			log_info("xdp: attached to %s (%s mode)", name,
				 used == SL_XDP_GENERIC ? "generic" : "native");
	}
	return MNL_CB_OK;
}

static void on_netlink(struct loop_watch *lw, uint32_t events)
{
	struct ifwatch *w = (struct ifwatch *)((char *)lw - offsetof(struct ifwatch, watch));
	char buf[MNL_SOCKET_BUFFER_SIZE];
	ssize_t n;

	(void)events;
	while ((n = mnl_socket_recvfrom(w->nl, buf, sizeof(buf))) > 0)
		mnl_cb_run(buf, n, 0, 0, on_link, w);
}

/* One RTM_GETLINK dump, on a socket of its own, for the interfaces already there. */
static int scan_links(struct ifwatch *w)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	struct nlmsghdr *nlh;
	unsigned int seq = time(NULL), portid;
	ssize_t n;
	int ret = MNL_CB_OK, err = 0;

	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		goto out;
	}
	portid = mnl_socket_get_portid(nl);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETLINK;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = seq;
	mnl_nlmsg_put_extra_header(nlh, sizeof(struct rtgenmsg));
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		err = -errno;
		goto out;
	}
	while (ret > MNL_CB_STOP && (n = mnl_socket_recvfrom(nl, buf, sizeof(buf))) > 0)
		ret = mnl_cb_run(buf, n, seq, portid, on_link, w);
	if (ret < 0)
		err = -errno;
out:
	if (nl)
		mnl_socket_close(nl);
	return err;
}

int ifwatch_start(struct ifwatch *w, struct loop *loop, const char *pattern,
		  const char *pin_root, const int *no_forward)
{
	int err;

	w->loop = loop;
	w->pattern = pattern;
	w->pin_root = pin_root;
	w->no_forward = no_forward;
	w->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (!w->nl || mnl_socket_bind(w->nl, RTMGRP_LINK, MNL_SOCKET_AUTOPID) < 0) {
		err = -errno;
		log_err("xdp: cannot follow interfaces over rtnetlink: %s", strerror(-err));
		ifwatch_stop(w);
		return err;
	}
	w->watch = (struct loop_watch){ mnl_socket_get_fd(w->nl), on_netlink };
	err = loop_add(loop, &w->watch, EPOLLIN);
	if (!err)
		err = scan_links(w);
	if (err) {
		log_err("xdp: cannot list interfaces: %s", strerror(-err));
		ifwatch_stop(w);
		return err;
	}
	log_info("xdp: attaching to interfaces matching \"%s\"%s", pattern,
		 *no_forward ? " without forwarding (--xdp-no-forward)" : "");
	return 0;
}

void ifwatch_stop(struct ifwatch *w)
{
	if (!w->nl)
		return;
	if (w->loop)
		loop_del(w->loop, &w->watch);
	mnl_socket_close(w->nl);
	w->nl = NULL;
}
