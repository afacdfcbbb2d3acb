// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/magic.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "sluice/flow.h"
#include "flowseed.h"
#include "log.h"
#include "loader.h"
#include "maps.h"
#include "rebuild.h"
#include "sock_lb.skel.h"
#include "sockops.skel.h"
#include "xdp.skel.h"
#include <dirent.h>
#include <net/if.h>
#include <linux/if_link.h>

#define BPFFS_MOUNT "/sys/fs/bpf"

/* The BPF objects, loaded in this order; all of them share the pinned maps. */
static const struct datapath_obj {
	const char *name;
	const void *(*elf_bytes)(size_t *size);
	int conn_tracking; /* only loaded when connections are followed */
	int per_interface; /* attached by sl_xdp_attach, one link per interface */
} datapath_objs[] = {
	{ "sock_lb", sock_lb_bpf__elf_bytes, 0, 0 },
	{ "sockops", sockops_bpf__elf_bytes, 1, 0 },
	{ "xdp", xdp_bpf__elf_bytes, 0, 1 },
};

/*
 * XDP link pins: "xdp@NETNS:IFNAME", NETNS the inode of the caller's network
 * namespace, since interface names are only unique within one.
 */
#define XDP_LINK_PREFIX "xdp@"

static __u64 netns_inode(void)
{
	struct stat st;

	return stat("/proc/self/ns/net", &st) ? 0 : st.st_ino;
}

#define for_each_datapath_obj(d) \
	for (d = datapath_objs; d < datapath_objs + sizeof(datapath_objs) / sizeof(datapath_objs[0]); d++)

/* Opens (does not load) one of the objects; pin_root may be NULL when only names are wanted. */
static struct bpf_object *open_obj(const struct datapath_obj *d, const char *pin_root)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = d->name, .pin_root_path = pin_root);
	struct bpf_object *obj;
	const void *bytes;
	size_t size;

	bytes = d->elf_bytes(&size);
	obj = bpf_object__open_mem(bytes, size, &opts);
	if (!obj)
		log_err("cannot open the %s BPF object: %s", d->name, strerror(errno));
	return obj;
}

int sl_cgroup2_root(char *buf, size_t size)
{
	struct mntent *ent;
	FILE *f = setmntent("/proc/mounts", "r");
	int err = -ENOENT;

	if (!f)
		return -errno;
	while ((ent = getmntent(f))) {
		if (!strcmp(ent->mnt_type, "cgroup2")) {
			snprintf(buf, size, "%s", ent->mnt_dir);
			err = 0;
			break;
		}
	}
	endmntent(f);
	return err;
}

static int is_fs(const char *path, long magic)
{
	struct statfs st;

	return !statfs(path, &st) && st.f_type == magic;
}

/* The pin root must sit on bpffs; mount it at /sys/fs/bpf if that is where it belongs. */
static int ensure_bpffs(const char *pin_root)
{
	char parent[PATH_MAX];
	char *slash;

	snprintf(parent, sizeof(parent), "%s", pin_root);
	slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	if (is_fs(parent, BPF_FS_MAGIC))
		return 0;
	if (!strncmp(pin_root, BPFFS_MOUNT "/", strlen(BPFFS_MOUNT) + 1)) {
		if (!mount("bpf", BPFFS_MOUNT, "bpf", 0, "mode=0700") && is_fs(parent, BPF_FS_MAGIC))
			return 0;
		log_err("bpffs is not mounted at %s and mounting it failed: %s (try 'mount -t bpf bpf %s')",
			BPFFS_MOUNT, strerror(errno), BPFFS_MOUNT);
		return -ENODEV;
	}
	log_err("%s is not on a bpffs mount: pinning needs bpffs (mount -t bpf bpf DIR)", parent);
	return -ENODEV;
}

static int resolve_cgroup(const char *requested, char *path, size_t size)
{
	if (!requested) {
		if (sl_cgroup2_root(path, size)) {
			log_err("cgroup v2 is not mounted (no cgroup2 entry in /proc/mounts); mount it or pass --cgroup");
			return -ENOENT;
		}
		return 0;
	}
	snprintf(path, size, "%s", requested);
	if (access(path, F_OK)) {
		log_err("cgroup %s: %s", path, strerror(errno));
		return -ENOENT;
	}
	if (!is_fs(path, CGROUP2_SUPER_MAGIC)) {
		log_err("%s is not a cgroup v2 directory (sluice attaches to cgroup v2 only)", path);
		return -EINVAL;
	}
	return 0;
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) && errno != EEXIST) {
		int err = -errno;

		log_err("cannot create %s: %s", path, strerror(-err));
		return err;
	}
	return 0;
}

static __u64 cgroup_id_of(const char *path)
{
	struct stat st;

	/* On cgroup v2 a directory's inode number is its cgroup id. */
	return stat(path, &st) ? 0 : st.st_ino;
}

static int link_cgroup_id(int link_fd, __u64 *cgroup_id, __u32 *link_id, __u32 *prog_id)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
		return -errno;
	*cgroup_id = info.type == BPF_LINK_TYPE_CGROUP ? info.cgroup.cgroup_id : 0;
	if (link_id)
		*link_id = info.id;
	if (prog_id)
		*prog_id = info.prog_id;
	return 0;
}

/*
 * Attaches prog to the cgroup through a pinned link. An existing pin on the
 * same cgroup gets the new program swapped in (an upgrade without a gap);
 * one on another cgroup is an error.
 */
static int attach_prog(struct bpf_program *prog, const char *cgroup, int cg_fd,
		       const char *link_path)
{
	const char *name = bpf_program__name(prog);
	struct bpf_link *link;
	__u64 pinned_cg = 0;
	int err;

	link = access(link_path, F_OK) ? NULL : bpf_link__open(link_path);
	if (link) {
		err = link_cgroup_id(bpf_link__fd(link), &pinned_cg, NULL, NULL);
		if (!err && pinned_cg != cgroup_id_of(cgroup)) {
			log_err("%s is already attached to another cgroup (id %llu), not %s; run 'sluicectl unload' first",
				name, (unsigned long long)pinned_cg, cgroup);
			err = -EEXIST;
		} else if (!err) {
			err = bpf_link__update_program(link, prog);
			if (err)
				log_err("cannot replace the program of link %s: %s", link_path,
					strerror(-err));
		}
		bpf_link__disconnect(link);
		bpf_link__destroy(link);
		return err;
	}

	link = bpf_program__attach_cgroup(prog, cg_fd);
	if (!link) {
		err = -errno;
		log_err("cannot attach %s to cgroup %s: %s", name, cgroup, strerror(-err));
		return err;
	}
	err = bpf_link__pin(link, link_path);
	if (err)
		log_err("cannot pin link %s: %s", link_path, strerror(-err));
	bpf_link__disconnect(link);
	bpf_link__destroy(link);
	return err;
}

static int pin_prog(struct bpf_program *prog, const char *path)
{
	int err;

	/* A program pin is only a reference: the fresh program replaces an old one. */
	if (unlink(path) && errno != ENOENT) {
		err = -errno;
		log_err("cannot replace %s: %s", path, strerror(-err));
		return err;
	}
	err = bpf_program__pin(prog, path);
	if (err)
		log_err("cannot pin program at %s: %s", path, strerror(-err));
	return err;
}

static int obj_path(char *buf, size_t size, const char *pin_root, const char *dir, const char *name)
{
	int n = snprintf(buf, size, "%s/%s/%s", pin_root, dir, name);

	if (n < 0 || (size_t)n >= size) {
		log_err("path %s/%s/%s is too long", pin_root, dir, name);
		return -ENAMETOOLONG;
	}
	return 0;
}

/*
 * Sets a `const volatile` global of obj before load, found by name in the
 * BTF of its .rodata section. Returns -ENOENT when obj has no such variable.
 */
static int set_rodata(struct bpf_object *obj, const char *var, const void *val, size_t size)
{
	const struct btf *btf = bpf_object__btf(obj);
	const struct btf_var_secinfo *vs;
	const struct btf_type *sec;
	struct bpf_map *map;
	size_t data_size;
	int err = -ENOENT;

	bpf_object__for_each_map(map, obj) {
		if (!bpf_map__is_internal(map) || !strstr(bpf_map__name(map), ".rodata"))
			continue;
		sec = btf__type_by_id(btf, bpf_map__btf_value_type_id(map));
		if (!sec)
			continue;
		vs = btf_var_secinfos(sec);
		for (__u16 i = 0; i < btf_vlen(sec); i++, vs++) {
			const struct btf_type *v = btf__type_by_id(btf, vs->type);
			const void *cur = bpf_map__initial_value(map, &data_size);
			char *data;

			if (strcmp(btf__name_by_offset(btf, v->name_off), var) || vs->size != size ||
			    vs->offset + size > data_size)
				continue;
			data = malloc(data_size);
			if (!data)
				return -ENOMEM;
			memcpy(data, cur, data_size);
			memcpy(data + vs->offset, val, size);
			err = bpf_map__set_initial_value(map, data, data_size);
			free(data);
			return err;
		}
	}
	return err;
}

static int unload_obj(const struct datapath_obj *d, const char *pin_root, int maps, int *removed);

/*
 * The size of a table sized at load (sl_rl_client, sl_xdp_flows), in entries:
 * every object must create or reuse it with the pinned size, so an
 * unasked-for size follows the pin; a different size asked for needs an
 * unload first. *size is the size in force.
 */
static int size_map(struct bpf_object *obj, const char *pin_root, const char *name, __u32 want,
		    __u32 fallback, __u32 *size, __u32 per_entry, const char *unit)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, name);
	__u32 pinned = 0;
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	int fd;

	*size = 0;
	if (!map)
		return 0;
	if ((fd = sl_pin_open(pin_root, name)) >= 0) {
		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(fd, &info, &len))
			pinned = info.max_entries;
		close(fd);
	}
	if (want && pinned && want != pinned) {
		log_err("%s is pinned for %llu %s, not %llu: 'sluicectl unload' first to resize it",
			name, (unsigned long long)pinned * per_entry, unit,
			(unsigned long long)want * per_entry);
		return -EEXIST;
	}
	*size = want ? want : pinned ? pinned : fallback;
	return bpf_map__set_max_entries(map, *size);
}

/* The flow table's buckets for --xdp-flows N: N / SL_FLOW_WAYS, up to a power of two. */
static __u32 flow_buckets_for(__u32 flows)
{
	__u32 buckets = SL_FLOW_WAYS > flows ? 1 : flows / SL_FLOW_WAYS, p = 1;

	if (!flows)
		return 0;
	while (p < buckets)
		p <<= 1;
	return p;
}

/* sl_xdp's per-CPU maps: one block of stride entries per possible CPU (sluice/xdp.h). */
static int size_xdp_cpu_maps(struct bpf_object *obj, const char *pin_root)
{
	static const struct sl_xdp_cpu_map maps[] = SL_XDP_CPU_MAPS;
	int ncpus = libbpf_num_possible_cpus(), err = 0;
	__u32 size;

	if (ncpus < 1) {
		log_err("cannot count the possible CPUs: %s", strerror(ncpus < 0 ? -ncpus : EINVAL));
		return ncpus < 0 ? ncpus : -EINVAL;
	}
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]) && !err; i++)
		err = size_map(obj, pin_root, maps[i].name, maps[i].stride * (__u32)ncpus,
			       maps[i].stride, &size, 1, "entries");
	return err;
}

static int size_tables(struct bpf_object *obj, const struct sl_load_opts *o)
{
	__u32 size, buckets;
	__u64 seed;
	int err = size_map(obj, o->pin_root, "sl_rl_client", o->rl_clients, SL_RL_CLIENTS_DEFAULT,
			   &size, 1, "clients");

	if (!err)
		err = size_xdp_cpu_maps(obj, o->pin_root);
	if (!err)
		err = size_map(obj, o->pin_root, "sl_xdp_flows", flow_buckets_for(o->xdp_flows),
			       SL_XDP_FLOWS_DEFAULT / SL_FLOW_WAYS, &buckets, SL_FLOW_WAYS, "flows");
	if (err || !bpf_object__find_map_by_name(obj, "sl_xdp_flows"))
		return err;
	/* A table pinned at another size than a power of two is not this version's. */
	if (buckets & (buckets - 1)) {
		log_err("sl_xdp_flows is pinned with %u buckets, not a power of two: 'sluicectl unload' first",
			buckets);
		return -EINVAL;
	}
	/* One index word per bucket (sluice/flow.h). */
	err = size_map(obj, o->pin_root, "sl_xdp_flow_idx", sl_flow_index_entries(buckets),
		       sl_flow_index_entries(buckets), &size, SL_FLOW_WAYS * SL_FLOW_INDEX_WORDS,
		       "flows");
	if (err)
		return err;
	/* Every object defines the map (bpf/lib/maps.h); only the XDP one indexes it. */
	err = set_rodata(obj, "flow_buckets", &buckets, sizeof(buckets));
	if (err == -ENOENT)
		return 0;
	if (err) {
		log_err("cannot set flow_buckets in the xdp object: %s", strerror(-err));
		return err;
	}
	err = sl_flow_seed_read(o->pin_root, &seed);
	if (err == -ENOENT)
		log_err("%s/sl_xdp_fp_seed is missing: 'sluicectl load' first", o->pin_root);
	else if (err)
		log_err("cannot read %s/sl_xdp_fp_seed: %s", o->pin_root, strerror(-err));
	if (!err && (err = set_rodata(obj, "flow_seed", &seed, sizeof(seed))))
		log_err("cannot set flow_seed in the xdp object: %s", strerror(-err));
	return err;
}

/* Loads one object and pins and attaches each of its programs. */
static int load_obj(const struct datapath_obj *d, const struct sl_load_opts *o, const char *cgroup,
		    int cg_fd, int *prog_count)
{
	struct bpf_program *prog;
	struct bpf_object *obj;
	char path[PATH_MAX];
	int err;

	obj = open_obj(d, o->pin_root);
	if (!obj)
		return -errno;
	if (!d->conn_tracking) {
		__u8 tracking = !o->no_conn_tracking;

		err = set_rodata(obj, "conn_tracking", &tracking, sizeof(tracking));
		if (err) {
			log_err("cannot set conn_tracking in the %s object: %s", d->name,
				strerror(-err));
			goto out;
		}
	}
	err = size_tables(obj, o);
	if (err)
		goto out;
	err = bpf_object__load(obj);
	if (err) {
		log_err("cannot load the %s BPF programs: %s (a map pinned under %s with another layout, from another sluice version, also fails: 'sluicectl unload' first; -d shows libbpf's log)",
			d->name, strerror(-err), o->pin_root);
		goto out;
	}
	bpf_object__for_each_program(prog, obj) {
		const char *name = bpf_program__name(prog);

		err = obj_path(path, sizeof(path), o->pin_root, "progs", name);
		if (!err)
			err = pin_prog(prog, path);
		if (!err)
			err = obj_path(path, sizeof(path), o->pin_root, "links", name);
		if (!err)
			err = attach_prog(prog, cgroup, cg_fd, path);
		if (err)
			goto out;
		(*prog_count)++;
	}
out:
	bpf_object__close(obj);
	return err;
}

static int remove_pin(const char *path, int *removed);
static int refresh_xdp_links(const struct sl_load_opts *o, int *count);

/*
 * Maps an earlier version pinned that this one replaced (sl_xdp_backend holds
 * both now); their contents are not carried over: counters restart, routes
 * are looked up again.
 */
static const char *const retired_maps[] = { "sl_xdp_be_stats", "sl_xdp_nexthop" };

static int unpin_retired(const char *pin_root, int *removed)
{
	char path[PATH_MAX];
	int err = 0;

	for (size_t i = 0; i < sizeof(retired_maps) / sizeof(retired_maps[0]) && !err; i++)
		err = sl_pin_path(path, sizeof(path), pin_root, retired_maps[i]) ?:
		      remove_pin(path, removed);
	return err;
}

int sl_load(const struct sl_load_opts *o)
{
	char cgroup[PATH_MAX], path[PATH_MAX];
	const struct datapath_obj *d;
	int cg_fd = -1, lock_fd = -1, err, progs = 0, unpinned = 0, xdp_links = 0, health_fd;
	bool fill_health;

	if (geteuid() != 0) {
		log_err("must run as root: loading and attaching BPF programs needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN");
		return -EPERM;
	}
	err = ensure_bpffs(o->pin_root);
	if (err)
		return err;
	err = resolve_cgroup(o->cgroup, cgroup, sizeof(cgroup));
	if (err)
		return err;
	snprintf(path, sizeof(path), "%s/links", o->pin_root);
	if ((err = make_dir(o->pin_root)) || (err = make_dir(path)))
		return err;
	snprintf(path, sizeof(path), "%s/progs", o->pin_root);
	if ((err = make_dir(path)))
		return err;
	lock_fd = sl_lock_pin_root(o->pin_root);
	if (lock_fd < 0)
		return lock_fd;
	err = sl_flow_seed_prepare(o->pin_root);
	if (err)
		goto out;
	health_fd = sl_pin_open(o->pin_root, "sl_be_health");
	fill_health = health_fd == -ENOENT; /* created by this load */
	if (health_fd >= 0)
		close(health_fd);

	cg_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg_fd < 0) {
		err = -errno;
		log_err("cannot open cgroup %s: %s", cgroup, strerror(-err));
		goto out;
	}
	for_each_datapath_obj(d) {
		if (d->per_interface)
			continue;
		if (d->conn_tracking && o->no_conn_tracking)
			err = unload_obj(d, o->pin_root, 0, &unpinned);
		else
			err = load_obj(d, o, cgroup, cg_fd, &progs);
		if (err)
			goto out;
	}
	if ((fill_health && (err = sl_fill_be_health(o->pin_root))) ||
	    (err = sl_refill_vip_maps(o->pin_root)) ||
	    (err = refresh_xdp_links(o, &xdp_links)) ||
	    (err = unpin_retired(o->pin_root, &unpinned)))
		goto out;
	log_info("loaded: %d programs attached to %s, maps pinned under %s%s", progs, cgroup,
		 o->pin_root, o->no_conn_tracking ? " (connection tracking off)" : "");
	if (xdp_links)
		log_info("the fresh XDP program swapped into %d attached interface(s)", xdp_links);
out:
	if (cg_fd >= 0)
		close(cg_fd);
	close(lock_fd);
	return err;
}

static int remove_pin(const char *path, int *removed)
{
	if (unlink(path)) {
		if (errno == ENOENT)
			return 0;
		log_err("cannot remove %s: %s", path, strerror(errno));
		return -errno;
	}
	(*removed)++;
	return 0;
}

static int remove_dir(const char *path)
{
	if (rmdir(path) && errno != ENOENT) {
		if (errno == ENOTEMPTY)
			log_warn("%s still holds objects sluice did not create; left in place", path);
		else
			log_err("cannot remove %s: %s", path, strerror(errno));
		return errno == ENOTEMPTY ? 0 : -errno;
	}
	return 0;
}

/*
 * Removes the pins of one object's links and programs, and with maps its
 * maps (shared by every object), a pin already gone being fine.
 */
static int unpin_obj(struct bpf_object *obj, const char *pin_root, int maps, int *removed)
{
	struct bpf_program *prog;
	struct bpf_map *map;
	char path[PATH_MAX];
	int err = 0;

	/* Links first: unpinning the last reference detaches the program. */
	bpf_object__for_each_program(prog, obj) {
		if (!err)
			err = obj_path(path, sizeof(path), pin_root, "links", bpf_program__name(prog));
		if (!err)
			err = remove_pin(path, removed);
	}
	bpf_object__for_each_program(prog, obj) {
		if (!err)
			err = obj_path(path, sizeof(path), pin_root, "progs", bpf_program__name(prog));
		if (!err)
			err = remove_pin(path, removed);
	}
	bpf_object__for_each_map(map, obj) {
		if (!maps || !bpf_map__pin_path(map))
			continue; /* internal maps (.rodata...) are never pinned */
		if (!err && sl_pin_path(path, sizeof(path), pin_root, bpf_map__name(map)))
			err = -ENAMETOOLONG;
		if (!err)
			err = remove_pin(path, removed);
	}
	return err;
}

/* Unpins what one object created: its links (detaching it), programs and, with maps, maps. */
static int unload_obj(const struct datapath_obj *d, const char *pin_root, int maps, int *removed)
{
	struct bpf_object *obj = open_obj(d, NULL);
	int err;

	if (!obj)
		return -errno;
	err = unpin_obj(obj, pin_root, maps, removed);
	bpf_object__close(obj);
	return err;
}

/*
 * Removes the pinned XDP links (detaching them): of one interface of the
 * caller's network namespace, or every one with ifname NULL.
 */
/* An XDP link's info and the name of its program ("" if unreadable); -errno if not an XDP link. */
static int xdp_link_info(int link_fd, struct bpf_link_info *li, char *prog_name, size_t size)
{
	struct bpf_prog_info pi;
	__u32 len = sizeof(*li), plen = sizeof(pi);
	int pfd;

	memset(li, 0, sizeof(*li));
	if (bpf_obj_get_info_by_fd(link_fd, li, &len))
		return -errno;
	if (li->type != BPF_LINK_TYPE_XDP)
		return -EINVAL;
	memset(&pi, 0, sizeof(pi));
	prog_name[0] = 0;
	pfd = bpf_prog_get_fd_by_id(li->prog_id);
	if (pfd >= 0 && !bpf_obj_get_info_by_fd(pfd, &pi, &plen))
		snprintf(prog_name, size, "%s", pi.name);
	if (pfd >= 0)
		close(pfd);
	return 0;
}

/*
 * Swaps a freshly loaded XDP program into every pinned XDP link, the one
 * of the same name (sl_xdp or sl_xdp_edge), as load does for the socket
 * programs' links: otherwise an interface would run the old code against
 * maps whose layout or contents the new version changed (a VIP filter laid
 * out otherwise, say) until it was attached again. A link whose interface
 * is gone is left to attach-xdp and detach-xdp.
 */
static int refresh_xdp_links(const struct sl_load_opts *o, int *count)
{
	char dir[PATH_MAX], path[PATH_MAX + NAME_MAX + 2], name[BPF_OBJ_NAME_LEN];
	struct bpf_object *obj = NULL;
	struct bpf_link_info li;
	struct dirent *de;
	int err = 0, fd;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/links", o->pin_root);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) && !err) {
		struct bpf_program *prog;

		if (strncmp(de->d_name, XDP_LINK_PREFIX, strlen(XDP_LINK_PREFIX)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0 || xdp_link_info(fd, &li, name, sizeof(name)) || !li.xdp.ifindex) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (!obj) {
			obj = open_obj(&datapath_objs[2], o->pin_root);
			err = !obj ? -errno : size_tables(obj, o) ?: bpf_object__load(obj);
			if (err) {
				log_err("cannot load the xdp BPF program: %s", strerror(-err));
				close(fd);
				break;
			}
		}
		prog = bpf_object__find_program_by_name(obj, name);
		if (!prog) {
			log_warn("XDP link %s runs %s, which this version does not have; left as it is",
				 path, name[0] ? name : "an unreadable program");
		} else if (bpf_link_update(fd, bpf_program__fd(prog), NULL)) {
			err = -errno;
			log_err("cannot update the XDP link %s: %s", path, strerror(-err));
		} else {
			(*count)++;
		}
		close(fd);
	}
	closedir(d);
	bpf_object__close(obj);
	return err;
}

static int unpin_xdp_links(const char *pin_root, const char *ifname, int *removed)
{
	char dir[PATH_MAX], path[PATH_MAX + NAME_MAX + 2], mine[NAME_MAX + 1];
	struct dirent *de;
	int err = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/links", pin_root);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	snprintf(mine, sizeof(mine), XDP_LINK_PREFIX "%llu:%s", (unsigned long long)netns_inode(),
		 ifname ? ifname : "");
	while ((de = readdir(d)) && !err) {
		if (strncmp(de->d_name, XDP_LINK_PREFIX, strlen(XDP_LINK_PREFIX)) ||
		    (ifname && strcmp(de->d_name, mine)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		err = remove_pin(path, removed);
	}
	closedir(d);
	return err;
}

int sl_unload(const char *pin_root)
{
	const struct datapath_obj *d;
	char path[PATH_MAX];
	int lock_fd, err = 0, removed = 0;

	if (geteuid() != 0) {
		log_err("must run as root to remove pinned BPF objects");
		return -EPERM;
	}
	if (access(pin_root, F_OK)) {
		log_info("nothing to unload: %s does not exist", pin_root);
		return 0;
	}
	lock_fd = sl_lock_pin_root(pin_root);
	if (lock_fd < 0)
		return lock_fd;
	/* Opened, never loaded: the objects only name what load created. */
	err = unpin_xdp_links(pin_root, NULL, &removed);
	err = err ? err : unpin_retired(pin_root, &removed);
	for_each_datapath_obj(d) {
		if (!err)
			err = unload_obj(d, pin_root, 1, &removed);
		if (err)
			goto out;
	}
	snprintf(path, sizeof(path), "%s/links", pin_root);
	err = remove_dir(path);
	snprintf(path, sizeof(path), "%s/progs", pin_root);
	err = err ? err : remove_dir(path);
	err = err ? err : remove_dir(pin_root);
	if (!err)
		log_info("unloaded: removed %d pinned objects under %s", removed, pin_root);
out:
	close(lock_fd);
	return err;
}

static __u64 find_cgroup_id;
static char *found_cgroup;
static size_t found_cgroup_size;

static int match_cgroup(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_D && st->st_ino == find_cgroup_id) {
		snprintf(found_cgroup, found_cgroup_size, "%s", path);
		return 1;
	}
	return 0;
}

/* Finds the path of a cgroup v2 directory by id (its inode number). */
static void cgroup_path_of(__u64 id, char *buf, size_t size)
{
	char root[PATH_MAX];

	buf[0] = '\0';
	if (!id || sl_cgroup2_root(root, sizeof(root)))
		return;
	find_cgroup_id = id;
	found_cgroup = buf;
	found_cgroup_size = size;
	nftw(root, match_cgroup, 32, FTW_PHYS | FTW_MOUNT);
}

static void read_prog_status(const char *pin_root, const char *name, struct sl_prog_status *p)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	char path[PATH_MAX];
	int fd;

	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	if (!obj_path(path, sizeof(path), pin_root, "links", name) && (fd = bpf_obj_get(path)) >= 0) {
		struct bpf_link_info li;
		__u32 llen = sizeof(li);

		memset(&li, 0, sizeof(li));
		if (!bpf_obj_get_info_by_fd(fd, &li, &llen) && li.type == BPF_LINK_TYPE_CGROUP) {
			p->link_id = li.id;
			p->prog_id = li.prog_id;
			p->cgroup_id = li.cgroup.cgroup_id;
			p->attach_type = li.cgroup.attach_type;
		}
		close(fd);
	}
	if (!obj_path(path, sizeof(path), pin_root, "progs", name) && (fd = bpf_obj_get(path)) >= 0) {
		memset(&info, 0, sizeof(info));
		if (!bpf_obj_get_info_by_fd(fd, &info, &len)) {
			if (!p->prog_id)
				p->prog_id = info.id;
			p->run_cnt = info.run_cnt;
			p->run_time_ns = info.run_time_ns;
		}
		close(fd);
	}
	cgroup_path_of(p->cgroup_id, p->cgroup, sizeof(p->cgroup));
}

static void read_map_status(const char *pin_root, const char *name, struct sl_map_status *m)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	int fd;

	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	if ((fd = sl_pin_open(pin_root, name)) < 0)
		return;
	memset(&info, 0, sizeof(info));
	if (!bpf_obj_get_info_by_fd(fd, &info, &len)) {
		m->map_id = info.id;
		m->type = info.type;
		m->max_entries = info.max_entries;
	}
	close(fd);
}

/* The pinned XDP links: which interface each program is attached to, and how. */
static void read_xdp_status(const char *pin_root, struct sl_status *st)
{
	char dir[PATH_MAX], path[PATH_MAX + NAME_MAX + 2];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/links", pin_root);
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d)) && st->xdp_count < SL_STATUS_MAX_OBJS) {
		struct sl_xdp_status *x = &st->xdp[st->xdp_count];
		struct bpf_link_info li;
		int fd;

		if (strncmp(de->d_name, XDP_LINK_PREFIX, strlen(XDP_LINK_PREFIX)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		memset(x, 0, sizeof(*x));
		{
			const char *colon = strchr(de->d_name, ':');

			snprintf(x->ifname, sizeof(x->ifname), "%s",
				 colon ? colon + 1 : de->d_name + strlen(XDP_LINK_PREFIX));
			x->netns = strtoull(de->d_name + strlen(XDP_LINK_PREFIX), NULL, 10);
		}
		if (!xdp_link_info(fd, &li, x->prog_name, sizeof(x->prog_name))) {
			x->link_id = li.id;
			x->prog_id = li.prog_id;
			x->ifindex = li.xdp.ifindex;
		}
		close(fd);
		st->xdp_count++;
	}
	closedir(d);
}

int sl_status_read(const char *pin_root, struct sl_status *st)
{
	int required = 0, required_attached = 0, tracking = 0, tracking_attached = 0;
	const struct datapath_obj *d;
	struct bpf_program *prog;
	struct bpf_object *obj;

	memset(st, 0, sizeof(*st));
	read_xdp_status(pin_root, st);
	for_each_datapath_obj(d) {
		if (d->per_interface)
			continue;
		obj = open_obj(d, NULL);
		if (!obj)
			return -errno;
		bpf_object__for_each_program(prog, obj) {
			struct sl_prog_status *p = &st->progs[st->prog_count];

			if (st->prog_count == SL_STATUS_MAX_OBJS)
				break;
			read_prog_status(pin_root, bpf_program__name(prog), p);
			if (d->conn_tracking) {
				tracking++;
				tracking_attached += p->link_id != 0;
			} else {
				required++;
				required_attached += p->link_id != 0;
			}
			st->prog_count++;
		}
		bpf_object__close(obj);
	}
	for (size_t i = 0; i < sl_map_count && st->map_count < SL_STATUS_MAX_OBJS; i++)
		read_map_status(pin_root, sl_map_names[i], &st->maps[st->map_count++]);
	/* Loaded: the balancer attached and every map pinned; tracking is optional. */
	st->loaded = required > 0 && required_attached == required;
	for (size_t i = 0; i < st->map_count; i++)
		st->loaded &= st->maps[i].map_id != 0;
	st->conn_tracking = st->loaded && tracking_attached == tracking;
	return 0;
}


static int xdp_link_path(char *buf, size_t size, const char *pin_root, const char *ifname)
{
	int n = snprintf(buf, size, "%s/links/" XDP_LINK_PREFIX "%llu:%s", pin_root,
			 (unsigned long long)netns_inode(), ifname);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The mode the kernel reports for the XDP program on ifindex. */
static enum sl_xdp_mode xdp_mode_in_force(int ifindex)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);

	if (bpf_xdp_query(ifindex, 0, &q))
		return SL_XDP_AUTO;
	return q.attach_mode == XDP_ATTACHED_SKB ? SL_XDP_GENERIC : SL_XDP_NATIVE;
}

/* Attaches prog to ifindex through a new XDP link in the given mode. */
static int xdp_link(int prog_fd, int ifindex, __u32 flags)
{
	LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
	int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);

	return fd < 0 ? -errno : fd;
}

int sl_xdp_attach(const char *pin_root, const char *ifname, enum sl_xdp_mode mode, int forward,
		  enum sl_xdp_mode *used)
{
	struct sl_load_opts o = { .pin_root = pin_root };
	const struct datapath_obj *d = &datapath_objs[2];
	char path[PATH_MAX];
	struct bpf_program *prog;
	struct bpf_object *obj = NULL;
	int ifindex, lock_fd, link_fd = -1, err;

	if (geteuid() != 0) {
		log_err("must run as root to attach XDP programs");
		return -EPERM;
	}
	ifindex = if_nametoindex(ifname);
	if (!ifindex) {
		log_err("no interface %s in this network namespace: %s", ifname, strerror(errno));
		return -ENODEV;
	}
	if (access(pin_root, F_OK)) {
		log_err("nothing loaded under %s: run 'sluicectl load' first", pin_root);
		return -ENOENT;
	}
	lock_fd = sl_lock_pin_root(pin_root);
	if (lock_fd < 0)
		return lock_fd;
	err = xdp_link_path(path, sizeof(path), pin_root, ifname);
	if (err)
		goto out;
	obj = open_obj(d, pin_root);
	if (!obj) {
		err = -errno;
		goto out;
	}
	err = size_tables(obj, &o);
	if (!err)
		err = bpf_object__load(obj);
	if (err) {
		log_err("cannot load the xdp BPF program: %s (-d shows libbpf's log)", strerror(-err));
		goto out;
	}
	prog = bpf_object__find_program_by_name(obj, forward ? "sl_xdp" : "sl_xdp_edge");
	if (!access(path, F_OK)) {
		/* Attached already: swap the fresh program in, keeping the link and its mode. */
		link_fd = bpf_obj_get(path);
		err = link_fd < 0 ? -errno : bpf_link_update(link_fd, bpf_program__fd(prog), NULL);
		if (err)
			log_err("cannot update the XDP link %s: %s", path, strerror(-err));
		*used = xdp_mode_in_force(ifindex);
		if (!err && mode != SL_XDP_AUTO && mode != *used)
			log_warn("%s keeps its %s XDP link; 'sluicectl detach-xdp %s' first to change the mode",
				 ifname, *used == SL_XDP_GENERIC ? "generic" : "native", ifname);
		goto out;
	}
	*used = mode == SL_XDP_GENERIC ? SL_XDP_GENERIC : SL_XDP_NATIVE;
	link_fd = xdp_link(bpf_program__fd(prog), ifindex,
			   *used == SL_XDP_NATIVE ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
	if (link_fd < 0 && mode == SL_XDP_AUTO) {
		log_warn("native XDP refused on %s (%s): attaching in generic mode, which is slower",
			 ifname, strerror(-link_fd));
		*used = SL_XDP_GENERIC;
		link_fd = xdp_link(bpf_program__fd(prog), ifindex, XDP_FLAGS_SKB_MODE);
	}
	if (link_fd < 0) {
		err = link_fd;
		log_err("cannot attach XDP to %s: %s", ifname, strerror(-err));
		goto out;
	}
	if (bpf_obj_pin(link_fd, path)) {
		err = -errno;
		log_err("cannot pin the XDP link at %s: %s", path, strerror(-err));
	}
out:
	if (link_fd >= 0)
		close(link_fd);
	bpf_object__close(obj);
	close(lock_fd);
	return err;
}

int sl_xdp_detach(const char *pin_root, const char *ifname)
{
	char path[PATH_MAX];
	int lock_fd, removed = 0, err;

	if (geteuid() != 0) {
		log_err("must run as root to detach XDP programs");
		return -EPERM;
	}
	err = xdp_link_path(path, sizeof(path), pin_root, ifname);
	if (err)
		return err;
	if (access(path, F_OK)) {
		log_err("sluice has no XDP program attached to %s (no %s)", ifname, path);
		return -ENOENT;
	}
	lock_fd = sl_lock_pin_root(pin_root);
	if (lock_fd < 0)
		return lock_fd;
	err = unpin_xdp_links(pin_root, ifname, &removed);
	close(lock_fd);
	return err;
}

int sl_xdp_attached(const char *pin_root, const char *ifname)
{
	struct bpf_link_info li;
	__u32 len = sizeof(li);
	char path[PATH_MAX];
	int fd, removed = 0, live = 0;
	unsigned int ifindex = if_nametoindex(ifname);

	if (xdp_link_path(path, sizeof(path), pin_root, ifname) || access(path, F_OK))
		return 0;
	fd = bpf_obj_get(path);
	if (fd >= 0) {
		memset(&li, 0, sizeof(li));
		live = !bpf_obj_get_info_by_fd(fd, &li, &len) && li.type == BPF_LINK_TYPE_XDP &&
		       ifindex && li.xdp.ifindex == ifindex;
		close(fd);
	}
	/* A pin whose interface went away (and maybe came back) holds a dead link. */
	if (!live)
		unpin_xdp_links(pin_root, ifname, &removed);
	return live;
}
